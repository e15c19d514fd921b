"""GAN objectives: the StyleGAN2 loss with lazy R1 and path-length regularization, and the
relativistic R1+R2 (R3GAN), WGAN-GP and hinge alternatives.

The training loop runs *phases*, each a (name, module, optimizer, interval) record built by
`make_phases`: 'Gmain' and 'Dmain' every minibatch, 'Greg' every 4th and 'Dreg' every 16th
(lazy regularization, Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN", appendix B), or 'Gboth'/'Dboth' when regularization is not lazy. For every phase it
calls `loss.accumulate_gradients(phase.name, ..., gain=phase.interval, ...)`: the gain makes
a regularizer evaluated every k minibatches weigh as if it ran every time, and `lazy_reg_adjust`
rescales that optimizer's lr and Adam betas by k/(k+1) to compensate for the extra steps.

Statistics are reported with `training_stats.report` under the NVlabs names ('Loss/scores/real',
'Loss/signs/real', 'Loss/G/loss', 'Loss/D/loss', 'Loss/r1_penalty', 'Loss/pl_penalty', ...);
nothing here syncs with the host.

Gradients go only to the module of the phase (G for G phases, D for D phases): backward is
restricted to that module's trainable parameters, whatever `requires_grad` the loop left on the
other one.
"""

import numpy as np
import torch

import dnnlib
from ops import upfirdn2d
from torch_utils import training_stats

PHASES = ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth')
LOSS_TYPES = ('logistic', 'r3gan', 'wgan-gp', 'hinge')

#----------------------------------------------------------------------------
# Lazy regularization bookkeeping.

def lazy_reg_adjust(opt_kwargs, reg_interval):
    """Optimizer kwargs for a module regularized every `reg_interval` minibatches.

    With k = reg_interval and mb_ratio = k / (k + 1): lr *= mb_ratio and each Adam beta becomes
    beta ** mb_ratio, so that k main steps plus one regularization step move the parameters and
    the moment estimates as k steps would (NVlabs training_loop). Returns a new EasyDict (betas
    as floats); `reg_interval` None or 0 leaves lr and betas unchanged.
    """
    opt_kwargs = dnnlib.EasyDict(opt_kwargs)
    if 'betas' in opt_kwargs:
        opt_kwargs.betas = [float(beta) for beta in opt_kwargs.betas]  # torch Adam rejects int betas
    if not reg_interval:
        return opt_kwargs
    if reg_interval < 0:
        raise ValueError(f'lazy_reg_adjust: reg_interval must be >= 0 or None, got {reg_interval!r}')
    mb_ratio = reg_interval / (reg_interval + 1)
    if 'lr' in opt_kwargs:
        opt_kwargs.lr = opt_kwargs.lr * mb_ratio
    if 'betas' in opt_kwargs:
        opt_kwargs.betas = [beta ** mb_ratio for beta in opt_kwargs.betas]
    return opt_kwargs


def make_phases(name, module, opt_kwargs, reg_interval):
    """Phases of one network for the training loop.

    Args:
        name:         'G' or 'D'.
        module:       the network whose parameters the optimizer updates.
        opt_kwargs:   optimizer kwargs with `class_name` (e.g. 'torch.optim.Adam'), lr, betas, eps.
        reg_interval: minibatches between regularization steps (NVlabs: 4 for G, 16 for D), or
                      None/0 to regularize in the same step as the main loss.
    Returns:
        List of EasyDict(name, module, opt, interval): [name+'main' (1), name+'reg' (reg_interval)]
        sharing one optimizer built with `lazy_reg_adjust`, or [name+'both' (1)].
    """
    if name not in ('G', 'D'):
        raise ValueError(f"make_phases: name must be 'G' or 'D', got {name!r}")
    if 'class_name' not in opt_kwargs:
        raise ValueError(f"make_phases: opt_kwargs for {name} need a class_name such as 'torch.optim.Adam'")
    opt_kwargs = lazy_reg_adjust(opt_kwargs, reg_interval)
    opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
    if not reg_interval:
        return [dnnlib.EasyDict(name=name + 'both', module=module, opt=opt, interval=1)]
    return [dnnlib.EasyDict(name=name + 'main', module=module, opt=opt, interval=1),
            dnnlib.EasyDict(name=name + 'reg', module=module, opt=opt, interval=int(reg_interval))]

#----------------------------------------------------------------------------

def _backward(loss, module):
    """loss.backward() into the trainable parameters of `module` only."""
    params = [p for p in module.parameters() if p.requires_grad]
    if params:
        loss.backward(inputs=params)


class StyleGAN2Loss:
    """Losses of one GAN, NVlabs-compatible constructor and `accumulate_gradients`.

    Args (NVlabs):
        device:            torch device of the networks.
        G, D:              generator (with `.mapping` and `.synthesis`) and discriminator.
        augment_pipe:      None or an AugmentPipe applied to every image D sees (reals and fakes).
        r1_gamma:          R1 weight gamma: penalty gamma/2 * ||grad_x D(x)||^2 on reals (0 = off).
                           For 'r3gan' the same gamma weighs R1 on reals and R2 on fakes.
        style_mixing_prob: probability of mixing two latents at a random layer cutoff per batch.
        pl_weight:         path-length regularization weight (0 = off; 2 in the paper configs).
        pl_batch_shrink:   the PL batch is the main batch divided by this.
        pl_decay:          decay of the running mean path length `pl_mean`.
        blur_init_sigma, blur_fade_kimg: blur images shown to D with a Gaussian whose sigma fades
                           from blur_init_sigma to 0 over blur_fade_kimg (0 = off).
    Options:
        loss_type:     'logistic' (non-saturating, StyleGAN2), 'r3gan' (relativistic pairing
                       softplus(D(fake) - D(real)) with R1 + R2, Huang et al. 2024), 'wgan-gp'
                       (Wasserstein with gradient penalty on interpolates, Gulrajani et al. 2017,
                       plus the ProGAN drift term), 'hinge'.
        gp_lambda:     WGAN-GP penalty weight lambda * (||grad|| - 1)^2.
        wgan_epsilon:  ProGAN drift term weight eps * D(real)^2 for 'wgan-gp'.
        ada_controller: None or an AdaController that receives D(real) whenever
                       'Loss/signs/real' is reported.
    """

    def __init__(self, device, G, D, augment_pipe=None, r1_gamma=10, style_mixing_prob=0, pl_weight=0,
                 pl_batch_shrink=2, pl_decay=0.01, blur_init_sigma=0, blur_fade_kimg=0,
                 loss_type='logistic', gp_lambda=10, wgan_epsilon=0.001, ada_controller=None):
        if loss_type not in LOSS_TYPES:
            raise ValueError(f'StyleGAN2Loss: loss_type must be one of {", ".join(LOSS_TYPES)}, got {loss_type!r}')
        if int(pl_batch_shrink) < 1:
            raise ValueError(f'StyleGAN2Loss: pl_batch_shrink must be >= 1, got {pl_batch_shrink!r}')
        self.device = torch.device(device)
        self.G = G
        self.D = D
        self.augment_pipe = augment_pipe
        self.r1_gamma = float(r1_gamma)
        self.style_mixing_prob = float(style_mixing_prob)
        self.pl_weight = float(pl_weight)
        self.pl_batch_shrink = int(pl_batch_shrink)
        self.pl_decay = float(pl_decay)
        self.blur_init_sigma = float(blur_init_sigma)
        self.blur_fade_kimg = float(blur_fade_kimg)
        self.loss_type = loss_type
        self.gp_lambda = float(gp_lambda)
        self.wgan_epsilon = float(wgan_epsilon)
        self.ada_controller = ada_controller
        self.real_img_transform = None  # callable applied to real_img first (progressive growing sets blend_reals)
        self.pl_mean = torch.zeros([], device=self.device)  # running mean path length (saved state)

    # Saved state: the running PL mean.
    def state_dict(self):
        return {'pl_mean': self.pl_mean.detach().clone()}

    def load_state_dict(self, state):
        if 'pl_mean' not in state:
            raise KeyError('StyleGAN2Loss.load_state_dict: state lacks pl_mean')
        self.pl_mean.copy_(torch.as_tensor(state['pl_mean']).to(self.pl_mean.device, self.pl_mean.dtype))

    @property
    def d_reg_weight(self):
        """Weight of the D regularizer of this loss type (0 disables the Dreg phase)."""
        return self.gp_lambda if self.loss_type == 'wgan-gp' else self.r1_gamma

    #------------------------------------------------------------------
    def run_G(self, z, c, update_emas=False):
        """Generate images (with style mixing); returns (img, ws)."""
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0 and ws.shape[1] > 1:
            # Layers >= cutoff take the styles of a second latent; cutoff = num_ws means no mixing.
            num_ws = ws.shape[1]
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
            cutoff = torch.where(torch.rand([], device=ws.device) < self.style_mixing_prob, cutoff, torch.full_like(cutoff, num_ws))
            ws2 = self.G.mapping(torch.randn_like(z), c, update_emas=False)
            mix = torch.arange(num_ws, device=ws.device) >= cutoff  # no host sync, unlike ws[:, cutoff:]
            ws = torch.where(mix.reshape([1, -1, 1]), ws2, ws)
        img = self.G.synthesis(ws, update_emas=update_emas)
        return img, ws

    def run_D(self, img, c, blur_sigma=0, update_emas=False):
        """Blur (optional), augment (optional) and discriminate; returns logits [N, 1]."""
        blur_size = np.floor(blur_sigma * 3)
        if blur_size > 0:
            f = torch.arange(-blur_size, blur_size + 1, device=img.device).div(blur_sigma).square().neg().exp2()
            img = upfirdn2d.filter2d(img, (f / f.sum()).to(img.dtype))
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c, update_emas=update_emas)

    def _report_real(self, real_logits):
        training_stats.report('Loss/scores/real', real_logits)
        training_stats.report('Loss/signs/real', real_logits.sign())
        if self.ada_controller is not None:
            self.ada_controller.accumulate(real_logits)

    @staticmethod
    def _report_fake(gen_logits):
        training_stats.report('Loss/scores/fake', gen_logits)
        training_stats.report('Loss/signs/fake', gen_logits.sign())

    #------------------------------------------------------------------
    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        """Run one phase: forward, loss, and backward into the phase module's `.grad`, scaled by `gain`.

        Args:
            phase:    one of PHASES.
            real_img: [N, C, H, W] real images (float, in [-1, 1]).
            real_c:   [N, c_dim] labels of the reals.
            gen_z:    [N, z_dim] latents for the fakes.
            gen_c:    [N, c_dim] labels for the fakes.
            gain:     loss multiplier (the phase interval).
            cur_nimg: images shown so far (for the blur schedule).
        """
        if phase not in PHASES:
            raise ValueError(f'accumulate_gradients: phase must be one of {", ".join(PHASES)}, got {phase!r}')
        if self.real_img_transform is not None:
            real_img = self.real_img_transform(real_img)
        do_Gmain = phase in ('Gmain', 'Gboth')
        do_Gpl = phase in ('Greg', 'Gboth') and self.pl_weight != 0
        do_Dmain = phase in ('Dmain', 'Dboth')
        do_Dreg = phase in ('Dreg', 'Dboth') and self.d_reg_weight != 0
        blur_sigma = 0
        if self.blur_fade_kimg > 0:
            blur_sigma = max(1 - cur_nimg / (self.blur_fade_kimg * 1e3), 0) * self.blur_init_sigma

        if do_Gmain:
            self._G_main(real_img, real_c, gen_z, gen_c, gain, blur_sigma)
        if do_Gpl:
            self._G_pl(gen_z, gen_c, gain)
        if do_Dmain or do_Dreg:
            if self.loss_type == 'r3gan':
                self._D_relativistic(real_img, real_c, gen_z, gen_c, gain, blur_sigma, do_Dmain, do_Dreg)
            else:
                self._D_separate(real_img, real_c, gen_z, gen_c, gain, blur_sigma, do_Dmain, do_Dreg)

    # Gmain: make D score the fakes as real.
    def _G_main(self, real_img, real_c, gen_z, gen_c, gain, blur_sigma):
        gen_img, _gen_ws = self.run_G(gen_z, gen_c)
        gen_logits = self.run_D(gen_img, gen_c, blur_sigma=blur_sigma)
        self._report_fake(gen_logits)
        if self.loss_type == 'logistic':
            loss_G = torch.nn.functional.softplus(-gen_logits)  # -log(sigmoid(D(G(z))))
        elif self.loss_type == 'r3gan':
            real_logits = self.run_D(real_img.detach(), real_c, blur_sigma=blur_sigma)
            loss_G = torch.nn.functional.softplus(real_logits - gen_logits)  # pairs fake i with real i
        else:  # wgan-gp, hinge
            loss_G = -gen_logits
        training_stats.report('Loss/G/loss', loss_G)
        _backward(loss_G.mean().mul(gain), self.G)

    # Greg: path-length regularization, (|J_w^T y| - a)^2 with a the running mean length.
    def _G_pl(self, gen_z, gen_c, gain):
        batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
        gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size])
        pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
        pl_grads = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws], create_graph=True, only_inputs=True)[0]
        pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
        pl_mean = self.pl_mean.to(pl_lengths.dtype).lerp(pl_lengths.mean(), self.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        pl_penalty = (pl_lengths - pl_mean).square()  # as NVlabs: gradient also flows through this batch's share of the mean
        training_stats.report('Loss/pl_penalty', pl_penalty)
        loss_Gpl = pl_penalty * self.pl_weight
        training_stats.report('Loss/G/reg', loss_Gpl)
        _backward(loss_Gpl.mean().mul(gain), self.G)

    def _fakes_for_D(self, gen_z, gen_c):
        """Fakes for a D phase: no graph into G (G's parameters are not trained here)."""
        with torch.no_grad():
            gen_img, _ws = self.run_G(gen_z, gen_c, update_emas=True)
        return gen_img

    @staticmethod
    def _input_grads(logits, inputs):
        """d(sum of logits)/d(inputs), differentiable (for penalties on the gradient)."""
        return torch.autograd.grad(outputs=[logits.sum()], inputs=inputs, create_graph=True, only_inputs=True)

    # Dmain/Dreg for logistic, hinge, wgan-gp: fake and real terms backpropagated one after the other.
    def _D_separate(self, real_img, real_c, gen_z, gen_c, gain, blur_sigma, do_Dmain, do_Dreg):
        wgan = self.loss_type == 'wgan-gp'
        loss_Dgen = 0
        gen_img = None
        if do_Dmain or (do_Dreg and wgan):
            gen_img = self._fakes_for_D(gen_z, gen_c)
        if do_Dmain:
            gen_logits = self.run_D(gen_img, gen_c, blur_sigma=blur_sigma, update_emas=True)
            self._report_fake(gen_logits)
            if self.loss_type == 'logistic':
                loss_Dgen = torch.nn.functional.softplus(gen_logits)  # -log(1 - sigmoid(D(G(z))))
            elif self.loss_type == 'hinge':
                loss_Dgen = torch.relu(1 + gen_logits)
            else:
                loss_Dgen = gen_logits
            _backward(loss_Dgen.mean().mul(gain), self.D)

        # Reals: main loss and/or R1 (for wgan-gp the penalty is on interpolates instead).
        r1 = do_Dreg and not wgan
        if do_Dmain or r1:
            real_img_tmp = real_img.detach().requires_grad_(r1)
            real_logits = self.run_D(real_img_tmp, real_c, blur_sigma=blur_sigma)
            self._report_real(real_logits)
            loss_Dreal = 0
            if do_Dmain:
                if self.loss_type == 'logistic':
                    loss_Dreal = torch.nn.functional.softplus(-real_logits)  # -log(sigmoid(D(x)))
                elif self.loss_type == 'hinge':
                    loss_Dreal = torch.relu(1 - real_logits)
                else:
                    loss_Dreal = -real_logits + self.wgan_epsilon * real_logits.square()
                training_stats.report('Loss/D/loss', loss_Dgen + loss_Dreal)
            loss_Dr1 = 0
            if r1:
                r1_grads, = self._input_grads(real_logits, [real_img_tmp])
                r1_penalty = r1_grads.square().sum([1, 2, 3])
                loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
                training_stats.report('Loss/r1_penalty', r1_penalty)
                training_stats.report('Loss/D/reg', loss_Dr1)
            _backward((loss_Dreal + loss_Dr1).mean().mul(gain), self.D)

        if do_Dreg and wgan:
            n = min(real_img.shape[0], gen_img.shape[0])
            t = torch.rand([n, 1, 1, 1], device=real_img.device, dtype=real_img.dtype)
            mix_img = torch.lerp(real_img[:n].detach(), gen_img[:n].detach(), t).requires_grad_(True)
            mix_logits = self.run_D(mix_img, real_c[:n], blur_sigma=blur_sigma)
            gp_grads, = self._input_grads(mix_logits, [mix_img])
            gp_penalty = (gp_grads.flatten(1).norm(dim=1) - 1).square()
            loss_Dgp = gp_penalty * self.gp_lambda
            training_stats.report('Loss/gp_penalty', gp_penalty)
            training_stats.report('Loss/D/reg', loss_Dgp)
            _backward(loss_Dgp.mean().mul(gain), self.D)

    # Dmain/Dreg for r3gan: relativistic pairing needs real and fake logits in one loss; R1 + R2.
    def _D_relativistic(self, real_img, real_c, gen_z, gen_c, gain, blur_sigma, do_Dmain, do_Dreg):
        gen_img = self._fakes_for_D(gen_z, gen_c)
        real_img_tmp = real_img.detach().requires_grad_(do_Dreg)
        gen_img_tmp = gen_img.detach().requires_grad_(do_Dreg)
        gen_logits = self.run_D(gen_img_tmp, gen_c, blur_sigma=blur_sigma, update_emas=True)
        real_logits = self.run_D(real_img_tmp, real_c, blur_sigma=blur_sigma)
        self._report_fake(gen_logits)
        self._report_real(real_logits)
        loss = 0
        if do_Dmain:
            loss_D = torch.nn.functional.softplus(gen_logits - real_logits)
            training_stats.report('Loss/D/loss', loss_D)
            loss = loss + loss_D
        if do_Dreg:
            r1_grads, r2_grads = torch.autograd.grad(outputs=[real_logits.sum() + gen_logits.sum()],
                inputs=[real_img_tmp, gen_img_tmp], create_graph=True, only_inputs=True)
            r1_penalty = r1_grads.square().sum([1, 2, 3])
            r2_penalty = r2_grads.square().sum([1, 2, 3])
            loss_Dreg = (r1_penalty + r2_penalty) * (self.r1_gamma / 2)
            training_stats.report('Loss/r1_penalty', r1_penalty)
            training_stats.report('Loss/r2_penalty', r2_penalty)
            training_stats.report('Loss/D/reg', loss_Dreg)
            loss = loss + loss_Dreg
        _backward(loss.mean().mul(gain), self.D)

#----------------------------------------------------------------------------
