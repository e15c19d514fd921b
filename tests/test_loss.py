"""Tests for training/loss.py: phases, gradient routing, penalties against hand-derived
references, gain linearity, lazy-regularization rescaling, saved state."""

import numpy as np
import pytest
import torch

from torch_utils import training_stats
from training import loss as loss_mod
from training.augment import AdaController, AugmentPipe, augpipe_specs
from training.loss import LOSS_TYPES, PHASES, StyleGAN2Loss, lazy_reg_adjust, make_phases
from training.networks_stylegan2 import Discriminator, Generator

RES = 16
Z_DIM = 8


def tiny_nets():
    G = Generator(z_dim=Z_DIM, c_dim=0, w_dim=8, img_resolution=RES, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  channel_base=64, channel_max=8, architecture='skip', conv_clamp=256)
    D = Discriminator(c_dim=0, img_resolution=RES, img_channels=3, channel_base=64, channel_max=8, architecture='resnet',
                      epilogue_kwargs=dict(mbstd_group_size=2))
    return G, D


@pytest.fixture(scope='module')
def nets():
    return tiny_nets()


def batch(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(real_img=torch.rand([n, 3, RES, RES], generator=g) * 2 - 1, real_c=torch.zeros([n, 0]),
                gen_z=torch.randn([n, Z_DIM], generator=g), gen_c=torch.zeros([n, 0]))


def grads(module):
    return {name: p.grad for name, p in module.named_parameters()}


def total_grad(module):
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

#----------------------------------------------------------------------------
# Stand-in linear networks with hand-derivable penalties.

class _LinearMapping(torch.nn.Module):
    def __init__(self, z_dim, w_dim, num_ws):
        super().__init__()
        self.num_ws = num_ws
        self.weight = torch.nn.Parameter(torch.randn([z_dim, w_dim], dtype=torch.float64))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        # Layer l gets (l + 1) * z @ weight, so that layers are distinguishable.
        scale = torch.arange(1, self.num_ws + 1, dtype=z.dtype).reshape([1, -1, 1])
        return (z @ self.weight).unsqueeze(1) * scale


class _LinearSynthesis(torch.nn.Module):
    def __init__(self, num_ws, w_dim, res):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn([num_ws, w_dim, 3, res, res], dtype=torch.float64))

    def forward(self, ws, update_emas=False, **kwargs):
        return torch.einsum('nlw,lwchx->nchx', ws, self.weight)


class LinearG(torch.nn.Module):
    def __init__(self, z_dim=4, w_dim=3, num_ws=3, res=4):
        super().__init__()
        self.mapping = _LinearMapping(z_dim, w_dim, num_ws)
        self.synthesis = _LinearSynthesis(num_ws, w_dim, res)


class LinearD(torch.nn.Module):
    def __init__(self, res=4):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn([3, res, res], dtype=torch.float64))

    def forward(self, img, c, update_emas=False):
        return (img * self.weight).flatten(1).sum(1, keepdim=True)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_phases_route_gradients(nets, loss_type):
    G, D = nets
    col = training_stats.Collector(regex='Loss/.*')
    loss = StyleGAN2Loss('cpu', G, D, r1_gamma=1, pl_weight=2, style_mixing_prob=0.9, loss_type=loss_type)
    for phase in PHASES:
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        loss.accumulate_gradients(phase, **batch(), gain=1, cur_nimg=0)
        trained, frozen = (G, D) if phase.startswith('G') else (D, G)
        assert all(g is None for g in grads(frozen).values()), f'{phase} wrote gradients into the other network'
        g = [p.grad for p in trained.parameters() if p.grad is not None]
        assert g and all(torch.isfinite(t).all() for t in g), phase
        assert total_grad(trained) > 0, phase
    col.update()
    for name in ['Loss/G/loss', 'Loss/D/loss', 'Loss/pl_penalty', 'Loss/scores/real', 'Loss/signs/fake']:
        assert col.num(name) > 0 and np.isfinite(col.mean(name)), name
    reg_name = {'r3gan': 'Loss/r2_penalty', 'wgan-gp': 'Loss/gp_penalty'}.get(loss_type, 'Loss/r1_penalty')
    assert col.num(reg_name) > 0 and np.isfinite(col.mean(reg_name))


def test_r1_matches_analytic_gradient():
    # D(x) = <w, x>: grad_x D = w, R1 = |w|^2 per image, d/dw of mean(gamma/2 |w|^2) * gain = gamma * gain * w.
    G, D = LinearG(), LinearD()
    gamma, gain = 3.0, 16
    loss = StyleGAN2Loss('cpu', G, D, r1_gamma=gamma)
    real = torch.randn([5, 3, 4, 4], dtype=torch.float64)
    loss.accumulate_gradients('Dreg', real, torch.zeros([5, 0]), torch.randn([5, 4], dtype=torch.float64),
                              torch.zeros([5, 0]), gain=gain, cur_nimg=0)
    torch.testing.assert_close(D.weight.grad, gamma * gain * D.weight.detach())
    assert G.synthesis.weight.grad is None


def test_r3gan_r1_r2_analytic():
    # Linear D: R1 and R2 both equal |w|^2, so Dreg's gradient is 2 * gamma * gain * w.
    G, D = LinearG(), LinearD()
    loss = StyleGAN2Loss('cpu', G, D, r1_gamma=2.0, loss_type='r3gan')
    loss.accumulate_gradients('Dreg', torch.randn([3, 3, 4, 4], dtype=torch.float64), torch.zeros([3, 0]),
                              torch.randn([3, 4], dtype=torch.float64), torch.zeros([3, 0]), gain=1, cur_nimg=0)
    torch.testing.assert_close(D.weight.grad, 2 * 2.0 * D.weight.detach())


def test_wgan_gp_analytic():
    # Linear D: |grad| = |w| for every interpolate, penalty lambda * (|w| - 1)^2.
    G, D = LinearG(), LinearD()
    lam = 10.0
    loss = StyleGAN2Loss('cpu', G, D, loss_type='wgan-gp', gp_lambda=lam)
    loss.accumulate_gradients('Dreg', torch.randn([3, 3, 4, 4], dtype=torch.float64), torch.zeros([3, 0]),
                              torch.randn([3, 4], dtype=torch.float64), torch.zeros([3, 0]), gain=1, cur_nimg=0)
    w = D.weight.detach()
    norm = w.norm()
    torch.testing.assert_close(D.weight.grad, lam * 2 * (norm - 1) * w / norm)


def test_path_length_against_reference():
    G, D = LinearG(), LinearD()
    decay, weight, gain = 0.25, 2.0, 4
    loss = StyleGAN2Loss('cpu', G, D, pl_weight=weight, pl_decay=decay, pl_batch_shrink=2)
    z = torch.randn([6, 4], dtype=torch.float64)
    torch.manual_seed(5)
    loss.accumulate_gradients('Greg', torch.zeros([6, 3, 4, 4]), torch.zeros([6, 0]), z, torch.zeros([6, 0]), gain=gain, cur_nimg=0)

    # Independent float64 reference: img = sum_l ws_l . W_l, so J^T y per layer = W_l . y.
    torch.manual_seed(5)
    y = torch.randn([3, 3, 4, 4], dtype=torch.float64) / 4     # pl noise / sqrt(H * W)
    Wmap = G.mapping.weight.detach().clone().requires_grad_(True)
    Wsyn = G.synthesis.weight.detach().clone().requires_grad_(True)
    jty = torch.einsum('lwchx,nchx->nlw', Wsyn, y)                # [n, layer, w]
    lengths = jty.square().sum(2).mean(1).sqrt()
    mean = torch.zeros([], dtype=torch.float64) + decay * lengths.mean()
    torch.testing.assert_close(loss.pl_mean, mean.detach().to(loss.pl_mean.dtype))
    ref_loss = ((lengths - mean).square() * weight).mean() * gain
    ref_loss.backward()
    torch.testing.assert_close(G.synthesis.weight.grad, Wsyn.grad)
    assert G.mapping.weight.grad is None or float(G.mapping.weight.grad.abs().max()) == 0
    assert D.weight.grad is None


def test_pl_real_network_second_order(nets):
    G, D = nets
    G.zero_grad(set_to_none=True)
    loss = StyleGAN2Loss('cpu', G, D, pl_weight=2)
    loss.accumulate_gradients('Greg', **batch(), gain=1, cur_nimg=0)
    # The PL penalty only reaches the synthesis weights through d(J^T y)/dW (double backward).
    assert total_grad(G.synthesis) > 0
    assert float(loss.pl_mean) > 0


@pytest.mark.parametrize('phase', ['Dmain', 'Dreg', 'Greg', 'Gmain'])
def test_gain_scales_gradients_linearly(nets, phase):
    G, D = nets
    module = G if phase.startswith('G') else D
    loss = StyleGAN2Loss('cpu', G, D, r1_gamma=1, pl_weight=2)
    results = []
    for gain in [1, 3]:
        module.zero_grad(set_to_none=True)
        loss.pl_mean.zero_()
        torch.manual_seed(7)
        loss.accumulate_gradients(phase, **batch(), gain=gain, cur_nimg=0)
        results.append([p.grad.clone() for p in module.parameters() if p.grad is not None])
    assert len(results[0]) == len(results[1]) > 0
    for g1, g3 in zip(*results):
        torch.testing.assert_close(g3, 3 * g1, rtol=1e-4, atol=1e-6)


def test_blur_fades_out():
    G, D = LinearG(), LinearD(res=8)
    G.synthesis = _LinearSynthesis(3, 3, 8)
    real = torch.randn([2, 3, 8, 8], dtype=torch.float64)
    args = (real, torch.zeros([2, 0]), torch.randn([2, 4], dtype=torch.float64), torch.zeros([2, 0]))
    results = {}
    for name, sigma, nimg in [('plain', 0, 0), ('blur', 1.0, 0), ('faded', 1.0, 2000)]:
        D.zero_grad(set_to_none=True)
        loss = StyleGAN2Loss('cpu', G, D, blur_init_sigma=sigma, blur_fade_kimg=1 if sigma else 0)
        loss.accumulate_gradients('Dmain', *args, gain=1, cur_nimg=nimg)
        results[name] = D.weight.grad.clone()
    torch.testing.assert_close(results['faded'], results['plain'])
    assert not torch.allclose(results['blur'], results['plain'])


def test_disabled_regularizers_skip_phases(nets):
    G, D = nets
    loss = StyleGAN2Loss('cpu', G, D, r1_gamma=0, pl_weight=0)
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    loss.accumulate_gradients('Greg', **batch(), gain=4, cur_nimg=0)
    loss.accumulate_gradients('Dreg', **batch(), gain=16, cur_nimg=0)
    assert total_grad(G) == 0 and total_grad(D) == 0


def test_style_mixing_takes_tail_layers_from_second_latent():
    G, D = LinearG(num_ws=5), LinearD()
    loss = StyleGAN2Loss('cpu', G, D, style_mixing_prob=1.0)
    z = torch.randn([2, 4], dtype=torch.float64)
    cutoffs = set()
    for seed in range(12):
        torch.manual_seed(seed)
        _img, ws = loss.run_G(z, None)
        ref = G.mapping(z, None)
        same = [bool(torch.equal(ws[:, l], ref[:, l])) for l in range(5)]
        cutoff = same.index(False)
        assert all(same[:cutoff]) and not any(same[cutoff:]) and 1 <= cutoff <= 4
        cutoffs.add(cutoff)
    assert len(cutoffs) > 1  # random cutoff


def test_ada_controller_receives_real_signs(nets):
    G, D = nets
    pipe = AugmentPipe(**augpipe_specs['bgc'])
    pipe.p.zero_()
    ada = AdaController(target=0.6, interval=1, speed_kimg=0.001, batch_size=4)
    loss = StyleGAN2Loss('cpu', G, D, augment_pipe=pipe, ada_controller=ada)
    loss.accumulate_gradients('Dmain', **batch(), gain=1, cur_nimg=0)
    assert float(ada.state_dict()['sums'][0]) == 4
    with torch.no_grad():
        expect_up = float((D(batch()['real_img'], None).sign().mean())) > 0.6
    ada.update(pipe)
    assert float(pipe.p) == (1.0 if expect_up else 0.0)


def test_state_round_trip():
    loss = StyleGAN2Loss('cpu', LinearG(), LinearD())
    loss.pl_mean.fill_(1.25)
    other = StyleGAN2Loss('cpu', LinearG(), LinearD())
    other.load_state_dict(loss.state_dict())
    assert float(other.pl_mean) == 1.25
    with pytest.raises(KeyError, match='pl_mean'):
        other.load_state_dict({})


def test_bad_arguments():
    G, D = LinearG(), LinearD()
    with pytest.raises(ValueError, match='loss_type'):
        StyleGAN2Loss('cpu', G, D, loss_type='lsgan')
    loss = StyleGAN2Loss('cpu', G, D)
    with pytest.raises(ValueError, match='phase'):
        loss.accumulate_gradients('Gfoo', None, None, None, None, 1, 0)

#----------------------------------------------------------------------------
# Lazy regularization.

def test_lazy_reg_adjust_formula():
    kw = dict(class_name='torch.optim.Adam', lr=0.0025, betas=[0, 0.99], eps=1e-8)
    for interval in [4, 16]:
        out = lazy_reg_adjust(kw, interval)
        ratio = interval / (interval + 1)
        assert out.lr == pytest.approx(0.0025 * ratio, rel=1e-12)
        assert out.betas == pytest.approx([0.0, 0.99 ** ratio], rel=1e-12)
        assert out.eps == 1e-8 and kw['lr'] == 0.0025  # input untouched
    assert lazy_reg_adjust(kw, None) == kw and lazy_reg_adjust(kw, 0) == kw
    assert all(isinstance(b, float) for b in lazy_reg_adjust(kw, None).betas)
    assert lazy_reg_adjust(kw, 16).lr == pytest.approx(0.0025 * 16 / 17)


def test_make_phases():
    G, D = LinearG(), LinearD()
    kw = dict(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8)
    phases = make_phases('G', G, kw, 4) + make_phases('D', D, kw, 16)
    assert [(p.name, p.interval) for p in phases] == [('Gmain', 1), ('Greg', 4), ('Dmain', 1), ('Dreg', 16)]
    assert phases[0].opt is phases[1].opt and phases[2].opt is phases[3].opt
    group = phases[3].opt.param_groups[0]
    assert group['lr'] == pytest.approx(0.002 * 16 / 17)
    assert group['betas'][1] == pytest.approx(0.99 ** (16 / 17))
    assert [p.name for p in make_phases('D', D, kw, None)] == ['Dboth']
    assert make_phases('D', D, kw, 0)[0].opt.param_groups[0]['lr'] == 0.002
    with pytest.raises(ValueError, match='class_name'):
        make_phases('G', G, dict(lr=0.1), 4)
    with pytest.raises(ValueError, match="'G' or 'D'"):
        make_phases('E', G, kw, 4)
    assert loss_mod.PHASES == PHASES


def test_style_mixing_draw_order_matches_nvlabs():
    # NVlabs draws, in this order: cutoff ~ U{1, .., num_ws - 1} (random_), u ~ U[0, 1) (mix iff u < prob,
    # else cutoff = num_ws), then the second latent randn_like(z) (drawn even when not mixing).
    G, D = LinearG(num_ws=5), LinearD()
    loss = StyleGAN2Loss('cpu', G, D, style_mixing_prob=0.5)
    z = torch.randn([3, 4], dtype=torch.float64)
    mixed = 0
    for seed in range(16):
        torch.manual_seed(seed)
        _img, ws = loss.run_G(z, None)
        after = torch.rand([])  # the global RNG must be left where NVlabs leaves it
        torch.manual_seed(seed)
        cutoff = int(torch.empty([], dtype=torch.int64).random_(1, 5))
        cutoff = cutoff if float(torch.rand([])) < 0.5 else 5
        z2 = torch.randn_like(z)
        ref = G.mapping(z, None).detach().clone()
        ref[:, cutoff:] = G.mapping(z2, None)[:, cutoff:]
        torch.testing.assert_close(ws, ref, rtol=0, atol=0)
        assert float(after) == float(torch.rand([]))
        mixed += cutoff < 5
    assert 0 < mixed < 16


def test_blur_kernel_is_nvlabs_exp2():
    # NVlabs blur: taps 2^(-(x / sigma)^2) for |x| <= floor(3 sigma), normalised; zero padding; sigma
    # fades linearly: sigma = max(1 - cur_nimg / (blur_fade_kimg * 1000), 0) * blur_init_sigma.
    G, D = LinearG(), LinearD(res=8)
    G.synthesis = _LinearSynthesis(3, 3, 8)
    loss = StyleGAN2Loss('cpu', G, D, blur_init_sigma=2.0, blur_fade_kimg=1)
    img = torch.randn([2, 3, 8, 8], dtype=torch.float64)
    for cur_nimg in [0, 400, 900]:
        sigma = (1 - cur_nimg / 1000) * 2.0
        r = int(np.floor(sigma * 3))
        x = np.arange(-r, r + 1)
        f = 2.0 ** (-(x / sigma) ** 2)
        f = torch.from_numpy(np.outer(f, f) / f.sum() ** 2).to(torch.float64)
        ref = torch.nn.functional.conv2d(img.reshape([6, 1, 8, 8]), f[None, None], padding=r).reshape(img.shape)
        torch.testing.assert_close(loss.run_D(img, None, blur_sigma=sigma), D(ref, None), rtol=1e-5, atol=1e-5)  # float32 taps, as NVlabs
    # The schedule inside accumulate_gradients: Dmain gradient of D equals the one on pre-blurred reals/fakes.
    D.zero_grad(set_to_none=True)
    z = torch.randn([2, 4], dtype=torch.float64)
    loss.accumulate_gradients('Dmain', img, torch.zeros([2, 0]), z, torch.zeros([2, 0]), gain=1, cur_nimg=400)
    got = D.weight.grad.clone()
    sigma = 0.6 * 2.0
    r = int(np.floor(sigma * 3))
    x = np.arange(-r, r + 1)
    f = 2.0 ** (-(x / sigma) ** 2)
    f = torch.from_numpy(np.outer(f, f) / f.sum() ** 2)
    blur = lambda t: torch.nn.functional.conv2d(t.reshape([-1, 1, 8, 8]), f[None, None], padding=r).reshape(t.shape)
    with torch.no_grad():
        fake = G.synthesis(G.mapping(z, None))
    Dw = D.weight.detach().clone().requires_grad_(True)
    logit = lambda t: (blur(t) * Dw).flatten(1).sum(1)
    ref_loss = torch.nn.functional.softplus(logit(fake)).mean() + torch.nn.functional.softplus(-logit(img)).mean()
    ref_loss.backward()
    torch.testing.assert_close(got, Dw.grad, rtol=1e-5, atol=1e-6)
