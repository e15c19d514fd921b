"""Progressive growing (ProGAN fade-in) as an option of the StyleGAN2 networks.

Karras et al. 2018, "Progressive Growing of GANs for Improved Quality, Stability, and
Variation". Training starts at `start_res`; each further resolution is first faded in (alpha
rising linearly from 0 to 1 over `fade_kimg` thousand images) and then stabilized
(`stabilize_kimg`); the start resolution is only stabilized. `progressive_schedule` maps images
seen to (cur_res, alpha).

Generator (`ProgressiveGenerator`, skip architecture): blocks above cur_res are not executed.
During a fade at resolution r the image is

    img_r = upsample(img_{r/2}) + alpha * torgb_r(x_r)

where img_{r/2} is the skip generator's image at r/2 and upsample is the block's own [1,3,3,1]
upsampling. The full skip network's image at r is upsample(img_{r/2}) + torgb_r(x_r), so this
is exactly ProGAN's lerp(upsample(lower-resolution output), higher-resolution output, alpha):
at alpha=0 the output is the lower-resolution network's image upsampled, at alpha=1 the plain
StyleGAN2 skip generator truncated at r.

Discriminator (`ProgressiveDiscriminator`, resnet or orig architecture): adds a 1x1 `fromrgb`
layer at every resolution below the top one (state_dict keys `fromrgb{res}`; the top block
keeps its own `b{R}.fromrgb`). At cur_res r during a fade the features entering the block
below r are lerp(fromrgb_{r/2}(boxdown(img_r)), b_r(fromrgb_r(img_r)), alpha); blocks above r
are not executed.

Image size choice: both networks keep the full `img_resolution` at their interface, so that the
augment pipe, the loss, the D input size, metrics and image grids need no change. G's image at
cur_res is upsampled to full size by pixel replication (nearest); D first box-downsamples its
input to cur_res, which exactly undoes the replication. Reals go through `blend_reals`, which
box-downsamples them to cur_res, lerps with their own lower-resolution version during a fade
(the same upsampling G uses) and replicates them back to full size.

Optimizer state: as ProGAN (`reset_opt_for_new_lod`), Adam's moments are reset whenever the
level of detail crosses an integer, i.e. at the start and at the end of every fade;
`needs_optimizer_reset` detects it and `reset_optimizer_state` does it.

The current (cur_res, alpha) of a network is set by the loop with `set_lod` every step (from
the schedule) and is also kept in the module's state_dict (as `_extra_state`), so a snapshot
taken mid-growth renders at the resolution it was trained at.

The training loop uses all of this through one object, `ProgressiveSchedule` (built from
`progressive_kwargs`): `update(cur_nimg, G=, D=, G_ema=, loss=, opts=)` once per minibatch.
"""

import functools

import numpy as np
import torch

from ops import upfirdn2d
from torch_utils import misc
from torch_utils import persistence
from training.loss import lazy_reg_adjust
from training.networks_stylegan2 import Conv2dLayer, Discriminator, Generator, SynthesisNetwork

#----------------------------------------------------------------------------
# Schedule.

def _check_res(name, res):
    if not (isinstance(res, (int, np.integer)) and res >= 4 and res & (res - 1) == 0):
        raise ValueError(f'{name} must be a power of two >= 4, got {res!r}')


def progressive_schedule(cur_nimg, start_res, max_res, stabilize_kimg, fade_kimg):
    """Resolution and fade-in weight after `cur_nimg` images.

    Phases: start_res stabilizes for stabilize_kimg; then for each doubling up to max_res the new
    resolution fades in over fade_kimg (alpha = fraction of the fade done, 0 -> 1) and then
    stabilizes for stabilize_kimg (alpha = 1); after the last phase max_res stays with alpha 1.

    Returns:
        (cur_res, alpha): int power of two, float in [0, 1].
    """
    _check_res('start_res', start_res)
    _check_res('max_res', max_res)
    if start_res > max_res:
        raise ValueError(f'start_res ({start_res}) must not exceed max_res ({max_res})')
    if stabilize_kimg < 0 or fade_kimg < 0:
        raise ValueError(f'stabilize_kimg and fade_kimg must be >= 0, got {stabilize_kimg!r}, {fade_kimg!r}')
    kimg = cur_nimg / 1000
    res = int(start_res)
    kimg -= stabilize_kimg
    if kimg < 0:
        return res, 1.0
    while res < max_res:
        res *= 2
        if kimg < fade_kimg:
            return res, float(kimg / fade_kimg)
        kimg -= fade_kimg
        if kimg < stabilize_kimg:
            return res, 1.0
        kimg -= stabilize_kimg
    return int(max_res), 1.0


def lod_of(cur_res, alpha, max_res):
    """ProGAN's level of detail: log2(max_res / cur_res) + (1 - alpha); 0 = full resolution."""
    return float(np.log2(max_res / cur_res) + (1 - alpha))


def needs_optimizer_reset(prev, cur, max_res):
    """True when the level of detail between two (cur_res, alpha) states crosses an integer (ProGAN resets Adam then)."""
    a, b = lod_of(*prev, max_res), lod_of(*cur, max_res)
    return np.floor(a) != np.floor(b) or np.ceil(a) != np.ceil(b)


def reset_optimizer_state(*optimizers):
    """Forget the moment estimates and step counts of the given optimizers (keeps lr and betas)."""
    for opt in optimizers:
        opt.state.clear()


def set_optimizer_lr(opt, lr, reg_interval=None):
    """Set every param group's lr to `lr`, rescaled for lazy regularization like `make_phases` does."""
    lr = lazy_reg_adjust(dict(lr=lr), reg_interval).lr
    for group in opt.param_groups:
        group['lr'] = lr


def set_lod(modules, cur_res, alpha):
    """Call `set_lod(cur_res, alpha)` on every progressive module among `modules` (others are skipped)."""
    for module in modules:
        if hasattr(module, 'set_lod'):
            module.set_lod(cur_res, alpha)

#----------------------------------------------------------------------------
# Resampling shared by G, D and the reals.

def box_downsample(img, factor):
    """Average over factor x factor blocks (factor 1 = unchanged)."""
    return img if factor == 1 else torch.nn.functional.avg_pool2d(img, kernel_size=factor)


def nearest_upsample(img, factor):
    """Pixel replication (factor 1 = unchanged); exactly undone by `box_downsample`."""
    return img if factor == 1 else img.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def blend_reals(img, cur_res, alpha, resample_filter=None):
    """Real images as D sees them at (cur_res, alpha), returned at full size.

    img [N, C, R, R] -> box-downsample to cur_res; during a fade (alpha < 1) lerp with the image's
    own lower-resolution version upsample(boxdown2(img_r)) (the upsampling G's skip path uses,
    [1,3,3,1] by default) by alpha; replicate back to R x R.
    """
    R = img.shape[-1]
    if R % cur_res != 0 or img.shape[-2] != R:
        raise ValueError(f'blend_reals: images must be square with a size divisible by cur_res={cur_res}, got {list(img.shape)}')
    x = box_downsample(img, R // cur_res)
    if alpha < 1 and cur_res > 4:
        f = upfirdn2d.setup_filter([1, 3, 3, 1] if resample_filter is None else resample_filter, device=img.device)
        low = upfirdn2d.upsample2d(box_downsample(x, 2), f.to(x.dtype))
        x = torch.lerp(low, x, float(alpha))
    return nearest_upsample(x, R // cur_res)

#----------------------------------------------------------------------------

class _LodMixin:
    """(cur_res, alpha) kept as python values (no host sync in forward) and saved as extra state."""

    def _init_lod(self, max_res):
        self.lod_res = int(max_res)
        self.lod_alpha = 1.0

    def set_lod(self, cur_res, alpha):
        _check_res('cur_res', cur_res)
        if cur_res > self.img_resolution:
            raise ValueError(f'cur_res {cur_res} exceeds img_resolution {self.img_resolution}')
        if not 0 <= alpha <= 1:
            raise ValueError(f'alpha must be in [0, 1], got {alpha!r}')
        self.lod_res = int(cur_res)
        self.lod_alpha = float(alpha)

    def get_extra_state(self):
        return {'lod_res': self.lod_res, 'lod_alpha': self.lod_alpha}

    def set_extra_state(self, state):
        self.set_lod(int(state['lod_res']), float(state['lod_alpha']))


@persistence.persistent_class
class ProgressiveSynthesisNetwork(_LodMixin, SynthesisNetwork):
    """SynthesisNetwork that renders at (lod_res, lod_alpha) and returns full-size images."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._init_lod(self.img_resolution)
        for res in self.block_resolutions:
            if not hasattr(getattr(self, f'b{res}'), 'torgb'):
                raise ValueError("ProgressiveGenerator needs architecture='skip' (every block needs a torgb layer), "
                                 f"got architecture={kwargs.get('architecture', 'skip')!r}")

    def forward_native(self, ws, **block_kwargs):
        """Image at lod_res [N, C, lod_res, lod_res]; blocks above lod_res are not run."""
        cur_res, alpha = self.lod_res, self.lod_alpha
        x = img = None
        for res, cur_ws in zip(self.block_resolutions, self.split_ws(ws)):
            block = getattr(self, f'b{res}')
            if res == cur_res and alpha < 1 and img is not None:
                # Fade: the block's torgb contribution enters with weight alpha.
                x, rgb = block(x, None, cur_ws, **block_kwargs)
                img = upfirdn2d.upsample2d(img, block.resample_filter) + rgb * alpha
            else:
                x, img = block(x, img, cur_ws, **block_kwargs)
            if res == cur_res:
                break
        return img

    def forward(self, ws, **block_kwargs):
        img = self.forward_native(ws, **block_kwargs)
        return nearest_upsample(img, self.img_resolution // self.lod_res)

    def extra_repr(self):
        return super().extra_repr() + f', lod_res={self.lod_res}, lod_alpha={self.lod_alpha:g}'


@persistence.persistent_class
class ProgressiveGenerator(Generator):
    """StyleGAN2 Generator (same kwargs and state_dict keys, plus the lod extra state) whose
    synthesis network grows progressively; requires architecture='skip'."""

    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, **synthesis_kwargs):
        super().__init__(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                         mapping_kwargs=mapping_kwargs, **synthesis_kwargs)
        self.synthesis = ProgressiveSynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)

    @property
    def lod_res(self):
        return self.synthesis.lod_res

    @property
    def lod_alpha(self):
        return self.synthesis.lod_alpha

    def set_lod(self, cur_res, alpha):
        self.synthesis.set_lod(cur_res, alpha)


@persistence.persistent_class
class ProgressiveDiscriminator(_LodMixin, Discriminator):
    """StyleGAN2 Discriminator (resnet or orig) with a fromrgb layer per resolution for fade-in.

    Input stays [N, C, img_resolution, img_resolution]; it is box-downsampled to lod_res.
    """

    def __init__(self, c_dim, img_resolution, img_channels, architecture='resnet', conv_clamp=256, **kwargs):
        if architecture == 'skip':
            raise ValueError("ProgressiveDiscriminator: architecture='skip' already reads the image at every "
                             "resolution; use 'resnet' (or 'orig') for progressive growing")
        super().__init__(c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels,
                         architecture=architecture, conv_clamp=conv_clamp, **kwargs)
        self._init_lod(img_resolution)
        for res in self.block_resolutions[1:] + [4]:
            channels = self.b4.in_channels if res == 4 else getattr(self, f'b{res}').conv0.in_channels
            setattr(self, f'fromrgb{res}', Conv2dLayer(img_channels, channels, kernel_size=1, activation='lrelu', conv_clamp=conv_clamp))

    def _from_rgb(self, res, img):
        return getattr(self, f'fromrgb{res}')(img.to(torch.float32))

    def forward(self, img, c, update_emas=False, **block_kwargs):
        _ = update_emas
        misc.assert_shape(img, [None, self.img_channels, self.img_resolution, self.img_resolution], name='img')
        cur_res, alpha = self.lod_res, self.lod_alpha
        img = box_downsample(img, self.img_resolution // cur_res)

        # Entry at cur_res (the top block has its own fromrgb), with the fade from cur_res / 2.
        x = None
        if cur_res > 4:
            block = getattr(self, f'b{cur_res}')
            if cur_res == self.img_resolution:
                x, _ = block(None, img, **block_kwargs)
            else:
                x, _ = block(self._from_rgb(cur_res, img), None, **block_kwargs)
            if alpha < 1:
                low = self._from_rgb(cur_res // 2, box_downsample(img, 2))
                x = torch.lerp(low, x.to(low.dtype), alpha)
        elif cur_res == self.img_resolution:
            raise ValueError('ProgressiveDiscriminator needs img_resolution >= 8')
        else:
            x = self._from_rgb(4, img)

        # Remaining blocks below cur_res, then the epilogue.
        for res in self.block_resolutions:
            if res < cur_res:
                x, _ = getattr(self, f'b{res}')(x, None, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, None, cmap)

    def extra_repr(self):
        return super().extra_repr() + f', lod_res={self.lod_res}, lod_alpha={self.lod_alpha:g}'

#----------------------------------------------------------------------------
# The training loop's hook.

class ProgressiveSchedule:
    """Progressive growing driven by the training loop: `update(cur_nimg, G=..., D=..., ...)` once
    per minibatch, before the phases run.

    Each update computes (cur_res, alpha) with `progressive_schedule`, sets it on G, G_ema and D
    (which must be ProgressiveGenerator / ProgressiveDiscriminator), makes the loss blend its
    reals with `blend_reals`, resets the optimizers' state where ProGAN does (start and end of
    each fade) and applies the per-resolution learning rate table. The minibatch stays
    --batch at every resolution (the loop's data stream, EMA and checkpoints assume one batch).

    Args:
        resolution:     final (dataset) resolution.
        start_res:      first resolution (ProGAN: 4).
        stabilize_kimg: thousands of images per stabilization phase (ProGAN: 600).
        fade_kimg:      thousands of images per fade-in (ProGAN: 600).
        lr_table:       None or {res: learning rate} for both G and D (before the lazy-regularization rescaling).
        G_reg_interval, D_reg_interval: the loop's lazy-regularization intervals (for the lr rescaling).
    """

    def __init__(self, resolution, start_res=4, stabilize_kimg=600, fade_kimg=600, lr_table=None,
                 G_reg_interval=4, D_reg_interval=16):
        _check_res('resolution', resolution)
        self.resolution = int(resolution)
        self.start_res = int(start_res)
        self.stabilize_kimg = float(stabilize_kimg)
        self.fade_kimg = float(fade_kimg)
        self.lr_table = dict(lr_table) if lr_table else None
        self.reg_intervals = {'G': G_reg_interval, 'D': D_reg_interval}
        self.at(0)  # validates the arguments
        self.lod = None  # (cur_res, alpha) of the latest update

    def at(self, cur_nimg):
        """(cur_res, alpha) after cur_nimg images."""
        return progressive_schedule(cur_nimg, self.start_res, self.resolution, self.stabilize_kimg, self.fade_kimg)

    def update(self, cur_nimg, G, D, G_ema=None, loss=None, opts=None):
        """Apply the schedule at cur_nimg. `opts`: the loop's optimizers as {'G': opt, 'D': opt}
        (or a list); without them there is no state reset and no lr table.

        Returns (cur_res, alpha) and whether the optimizer state was reset.
        """
        lod = self.at(cur_nimg)
        for name, module in [('G', G), ('D', D), ('G_ema', G_ema)]:
            if module is not None and not hasattr(module, 'set_lod'):
                cls = 'ProgressiveGenerator' if name != 'D' else 'ProgressiveDiscriminator'
                raise TypeError(f'Progressive growing needs {name} to be a training.progressive.{cls} '
                                f"(set class_name='training.progressive.{cls}' in its kwargs), got {type(module).__name__}")
        set_lod([m for m in (G, G_ema, D) if m is not None], *lod)
        if loss is not None:
            loss.real_img_transform = functools.partial(blend_reals, cur_res=lod[0], alpha=lod[1])
        named_opts = dict(opts) if isinstance(opts, dict) else {str(i): o for i, o in enumerate(opts or [])}
        reset = self.lod is not None and needs_optimizer_reset(self.lod, lod, self.resolution)
        if reset:
            reset_optimizer_state(*named_opts.values())
        table = {int(k): float(v) for k, v in (self.lr_table or {}).items()}
        if lod[0] in table:  # resolutions missing from the table keep the current lr
            for name, opt in named_opts.items():
                set_optimizer_lr(opt, table[lod[0]], self.reg_intervals.get(name))
        self.lod = lod
        return lod, reset

    def state_dict(self):
        return {'lod': list(self.lod) if self.lod is not None else None}

    def load_state_dict(self, state):
        if 'lod' not in state:
            raise KeyError('ProgressiveSchedule.load_state_dict: state lacks lod')
        self.lod = (int(state['lod'][0]), float(state['lod'][1])) if state['lod'] is not None else None

#----------------------------------------------------------------------------
