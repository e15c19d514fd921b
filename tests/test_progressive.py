"""Tests for training/progressive.py: schedule, fade-in semantics of G, D and the reals,
skipped blocks, optimizer resets and a short run across a resolution switch."""

import numpy as np
import pytest
import torch

from ops import upfirdn2d
from torch_utils import persistence
from training import progressive as prog
from training.loss import StyleGAN2Loss, make_phases
from training.networks_stylegan2 import Discriminator, Generator

RES = 16
G_KWARGS = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=RES, img_channels=3, mapping_kwargs=dict(num_layers=2),
                channel_base=64, channel_max=8, architecture='skip')
D_KWARGS = dict(c_dim=0, img_resolution=RES, img_channels=3, channel_base=64, channel_max=8, architecture='resnet',
                epilogue_kwargs=dict(mbstd_group_size=2))


@pytest.fixture(scope='module')
def nets():
    return prog.ProgressiveGenerator(**G_KWARGS), prog.ProgressiveDiscriminator(**D_KWARGS)


def test_schedule_trajectory():
    sched = lambda nimg: prog.progressive_schedule(nimg, start_res=4, max_res=16, stabilize_kimg=1, fade_kimg=2)
    expected = {0: (4, 1.0), 999: (4, 1.0), 1000: (8, 0.0), 1500: (8, 0.25), 2000: (8, 0.5), 2999: (8, 0.9995),
                3000: (8, 1.0), 3999: (8, 1.0), 4000: (16, 0.0), 5000: (16, 0.5), 6000: (16, 1.0), 10 ** 6: (16, 1.0)}
    for nimg, (res, alpha) in expected.items():
        got = sched(nimg)
        assert got[0] == res and got[1] == pytest.approx(alpha), nimg
    # Alpha rises linearly and strictly during every fade (ports often leave it constant).
    for start in [1000, 4000]:
        alphas = [sched(start + k * 100)[1] for k in range(20)]
        np.testing.assert_allclose(np.diff(alphas), 0.05, atol=1e-12)
    # No fade: direct switches.
    assert prog.progressive_schedule(1000, 8, 32, 1, 0) == (16, 1.0)
    assert prog.progressive_schedule(5, 16, 16, 1, 1) == (16, 1.0)


def test_schedule_errors():
    with pytest.raises(ValueError, match='start_res'):
        prog.progressive_schedule(0, 6, 16, 1, 1)
    with pytest.raises(ValueError, match='must not exceed'):
        prog.progressive_schedule(0, 32, 16, 1, 1)
    with pytest.raises(ValueError, match='fade_kimg'):
        prog.progressive_schedule(0, 4, 16, 1, -1)


def test_optimizer_resets_at_fade_start_and_end():
    sched = lambda nimg: prog.progressive_schedule(nimg, 4, 16, 1, 2)
    resets = []
    prev = sched(0)
    for nimg in range(0, 8000, 100):
        cur = sched(nimg)
        if prog.needs_optimizer_reset(prev, cur, 16):
            resets.append(nimg)
        prev = cur
    assert resets == [1100, 3000, 4100, 6000]  # first step with alpha > 0, and alpha reaching 1
    assert prog.lod_of(4, 1.0, 16) == 2 and prog.lod_of(8, 0.25, 16) == pytest.approx(1.75)
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    assert len(opt.state) == 1
    prog.reset_optimizer_state(opt)
    assert len(opt.state) == 0 and opt.param_groups[0]['lr'] == 0.1


def test_optimizer_lr_rescaled_for_lazy_regularization():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(1))], lr=1.0)
    prog.set_optimizer_lr(opt, 0.0017, reg_interval=16)
    assert opt.param_groups[0]['lr'] == pytest.approx(0.0017 * 16 / 17)


def test_generator_fade_semantics(nets):
    G, _D = nets
    ws = G.mapping(torch.randn([2, 8]), None)
    with torch.no_grad():
        native = {}
        for res, alpha in [(4, 1), (8, 0), (8, 0.5), (8, 1), (16, 0), (16, 1)]:
            G.set_lod(res, alpha)
            native[res, alpha] = G.synthesis.forward_native(ws, noise_mode='const')
            full = G.synthesis(ws, noise_mode='const')
            assert full.shape == (2, 3, RES, RES)
            torch.testing.assert_close(full, prog.nearest_upsample(native[res, alpha], RES // res), atol=0, rtol=0)
        f = G.synthesis.b8.resample_filter
        # alpha = 0: the lower-resolution image upsampled (exactly).
        torch.testing.assert_close(native[8, 0], upfirdn2d.upsample2d(native[4, 1], f))
        torch.testing.assert_close(native[16, 0], upfirdn2d.upsample2d(native[8, 1], f))
        # alpha = 0.5: halfway between (lerp).
        torch.testing.assert_close(native[8, 0.5], (native[8, 0] + native[8, 1]) / 2, atol=1e-5, rtol=0)
        # Full resolution = the plain StyleGAN2 generator with the same weights.
        plain = Generator(**G_KWARGS)
        plain.load_state_dict({k: v for k, v in G.state_dict().items() if not k.endswith('_extra_state')})
        torch.testing.assert_close(native[16, 1], plain.synthesis(ws, noise_mode='const'))


def test_discriminator_fade_semantics(nets):
    _G, D = nets
    img = torch.randn([4, 3, RES, RES])
    out = {}
    with torch.no_grad():
        for res, alpha in [(4, 1), (8, 0), (8, 0.5), (8, 1), (16, 0), (16, 1)]:
            D.set_lod(res, alpha)
            out[res, alpha] = D(img, None)
        torch.testing.assert_close(out[8, 0], out[4, 1])     # alpha = 0: the lower-resolution D
        torch.testing.assert_close(out[16, 0], out[8, 1])
        plain = Discriminator(**D_KWARGS)
        plain.load_state_dict(D.state_dict(), strict=False)
        torch.testing.assert_close(out[16, 1], plain(img, None))  # full resolution = plain D
        # Replicated input is seen exactly at cur_res.
        D.set_lod(8, 1)
        small = prog.box_downsample(img, 2)
        torch.testing.assert_close(D(prog.nearest_upsample(small, 2), None), out[8, 1])


def test_blend_reals():
    img = torch.randn([2, 3, RES, RES])
    assert torch.equal(prog.blend_reals(img, RES, 1.0), img)
    torch.testing.assert_close(prog.blend_reals(img, 8, 1.0), prog.nearest_upsample(prog.box_downsample(img, 2), 2))
    x8 = prog.box_downsample(img, 2)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    low = upfirdn2d.upsample2d(prog.box_downsample(x8, 2), f)
    torch.testing.assert_close(prog.blend_reals(img, 8, 0.0), prog.nearest_upsample(low, 2))
    torch.testing.assert_close(prog.blend_reals(img, 8, 0.25), prog.nearest_upsample(torch.lerp(low, x8, 0.25), 2))
    with pytest.raises(ValueError, match='cur_res=32'):
        prog.blend_reals(img, 32, 1.0)


def test_unused_blocks_not_run_and_get_no_gradient():
    G, D = prog.ProgressiveGenerator(**G_KWARGS), prog.ProgressiveDiscriminator(**D_KWARGS)
    calls = {}
    for name, module in [('G16', G.synthesis.b16), ('G8', G.synthesis.b8), ('D16', D.b16), ('D8', D.b8), ('rgb8', D.fromrgb8)]:
        calls[name] = 0
        module.register_forward_hook(lambda *args, name=name: calls.__setitem__(name, calls[name] + 1))
    G.set_lod(8, 0.5)
    D.set_lod(8, 0.5)
    img = G(torch.randn([2, 8]), None)
    D(img, None).sum().backward()
    assert calls == {'G16': 0, 'G8': 1, 'D16': 0, 'D8': 1, 'rgb8': 1}
    assert all(p.grad is None for p in G.synthesis.b16.parameters())
    assert all(p.grad is None for p in D.b16.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in G.synthesis.b8.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in D.b8.parameters())


def test_training_across_resolution_switches():
    torch.manual_seed(0)
    G, D = prog.ProgressiveGenerator(**G_KWARGS), prog.ProgressiveDiscriminator(**D_KWARGS)
    opt_kwargs = dict(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8)
    phases = make_phases('G', G, opt_kwargs, 4) + make_phases('D', D, opt_kwargs, 16)
    loss = StyleGAN2Loss('cpu', G, D, r1_gamma=1, pl_weight=2)
    sched = dict(start_res=4, max_res=RES, stabilize_kimg=0.004, fade_kimg=0.008)  # batch 4: 1 step stable, 2 fading
    reals = torch.rand([4, 3, RES, RES]) * 2 - 1
    prev = prog.progressive_schedule(0, **sched)
    seen, resets = [], 0
    for step in range(8):
        cur_nimg = step * 4
        cur = prog.progressive_schedule(cur_nimg, **sched)
        if prog.needs_optimizer_reset(prev, cur, RES):
            prog.reset_optimizer_state(*{id(p.opt): p.opt for p in phases}.values())
            resets += 1
        prev = cur
        prog.set_lod([G, D], *cur)
        seen.append(cur)
        real_img = prog.blend_reals(reals, *cur)
        for phase in phases:
            if step % phase.interval != 0:
                continue
            phase.opt.zero_grad(set_to_none=True)
            loss.accumulate_gradients(phase.name, real_img, torch.zeros([4, 0]), torch.randn([4, 8]), torch.zeros([4, 0]),
                                      gain=phase.interval, cur_nimg=cur_nimg)
            for p in phase.module.parameters():
                if p.grad is not None:
                    assert torch.isfinite(p.grad).all(), (phase.name, cur)
            if cur[0] < RES:  # the top blocks are not part of the graph yet: no gradient, Adam skips them
                top = G.synthesis.b16 if phase.name.startswith('G') else D.b16
                assert all(p.grad is None for p in top.parameters()), (phase.name, cur)
            phase.opt.step()
    assert [r for r, _a in seen] == [4, 8, 8, 8, 16, 16, 16, 16]
    assert [a for _r, a in seen] == pytest.approx([1, 0, 0.5, 1, 0, 0.5, 1, 1])
    assert resets == 4
    with torch.no_grad():
        out = D(G(torch.randn([4, 8]), None), None)
    assert torch.isfinite(out).all()


def test_state_and_errors():
    G = prog.ProgressiveGenerator(**G_KWARGS)
    G.set_lod(8, 0.25)
    G2 = prog.ProgressiveGenerator(**G.init_kwargs)
    G2.load_state_dict(G.state_dict())
    assert (G2.lod_res, G2.lod_alpha) == (8, 0.25)
    assert persistence.class_name_of(G) == 'training.progressive.ProgressiveGenerator'
    D = prog.ProgressiveDiscriminator(**D_KWARGS)
    assert set(k for k in D.state_dict() if k.startswith('fromrgb')) >= {'fromrgb8.weight', 'fromrgb4.weight'}
    with pytest.raises(ValueError, match="architecture='skip'"):
        prog.ProgressiveGenerator(**{**G_KWARGS, 'architecture': 'resnet'})
    with pytest.raises(ValueError, match="'resnet'"):
        prog.ProgressiveDiscriminator(**{**D_KWARGS, 'architecture': 'skip'})
    with pytest.raises(ValueError, match='exceeds img_resolution'):
        G.set_lod(32, 1)
    with pytest.raises(ValueError, match='alpha'):
        D.set_lod(8, 1.5)


def test_schedule_hook_for_the_training_loop():
    G, D = prog.ProgressiveGenerator(**G_KWARGS), prog.ProgressiveDiscriminator(**D_KWARGS)
    G_ema = prog.ProgressiveGenerator(**G_KWARGS)
    loss = StyleGAN2Loss('cpu', G, D)
    opts = {'G': torch.optim.Adam(G.parameters(), lr=0.1), 'D': torch.optim.Adam(D.parameters(), lr=0.1)}
    hook = prog.ProgressiveSchedule(resolution=RES, start_res=4, stabilize_kimg=0.004, fade_kimg=0.008,
                                    lr_table={'8': 0.004}, G_reg_interval=4, D_reg_interval=16)
    reals = torch.randn([2, 3, RES, RES])
    resets = []
    for nimg in range(0, 28, 4):
        p = next(D.parameters())
        p.grad = torch.ones_like(p)
        opts['D'].step()  # give the optimizer some state to reset
        lod, reset = hook.update(nimg, G=G, D=D, G_ema=G_ema, loss=loss, opts=opts)
        assert lod == hook.at(nimg) and (G.lod_res, G.lod_alpha) == lod == (D.lod_res, D.lod_alpha) == (G_ema.lod_res, G_ema.lod_alpha)
        torch.testing.assert_close(loss.real_img_transform(reals), prog.blend_reals(reals, *lod))
        if reset:
            resets.append(nimg)
            assert len(opts['D'].state) == 0
    assert resets == [8, 12, 20, 24]
    assert opts['G'].param_groups[0]['lr'] == pytest.approx(0.004 * 4 / 5)     # 8px entry, lazy-reg rescaled
    assert opts['D'].param_groups[0]['lr'] == pytest.approx(0.004 * 16 / 17)   # 16px keeps it
    restored = prog.ProgressiveSchedule(resolution=RES, start_res=4, stabilize_kimg=0.004, fade_kimg=0.008)
    restored.load_state_dict(hook.state_dict())
    assert restored.lod == hook.lod
    with pytest.raises(TypeError, match='ProgressiveGenerator'):
        hook.update(0, G=Generator(**G_KWARGS), D=D)
