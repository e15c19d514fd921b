"""Adaptive discriminator augmentation (ADA): the augmentation pipeline and its p controller.

Karras et al., "Training Generative Adversarial Networks with Limited Data" (NeurIPS 2020).
Semantics, parameter names, defaults and random-number draw order follow the NVlabs
`AugmentPipe`, so a pipe built from the same kwargs with the same `p` augments the same way:

- Pixel blitting (xflip, rotate90, xint) and general geometric transforms (scale, rotate,
  aniso, xfrac) are composed into one inverse homography per image and executed once: reflect
  padding, 2x upsampling with the sym6 wavelet low-pass, bilinear `grid_sample`, 2x
  downsampling with the same filter, crop.
- Color transforms (brightness, contrast, lumaflip, hue, saturation) are composed into one 4x4
  homogeneous matrix per image acting on RGB (the luma axis is (1,1,1)/sqrt(3)).
- Image-space filtering amplifies four frequency bands (sym2 filter bank) with random gains,
  normalised to the expected 1/f power spectrum.
- Additive RGB noise and cutout.

Every augmentation is applied to each image independently with probability `p * multiplier`
(non-leaking: with p < 1 the distribution of augmented reals still determines the real one).

Deliberate difference: an image for which a stage draws the identity (all its random
augmentations were skipped) passes that stage bit-exactly (a per-image `torch.where`, no host
sync), so `p = 0` is exactly the identity. NVlabs resamples such images through the
up/down filters, which is the identity only up to float rounding (~1e-6).

Gradients: the output is differentiable with respect to `images` to any order (R1 through the
pipe needs the second order): every op used is built from differentiable PyTorch primitives,
and PyTorch's own `grid_sample` supports double backward with respect to its input (checked by
gradgradcheck in tests/test_augment.py; NVlabs needed a custom grid_sample for older PyTorch).
No gradient flows to the random parameters or to `p`.
"""

import numpy as np
import torch

from ops import upfirdn2d
from torch_utils import persistence

#----------------------------------------------------------------------------
# Low-pass decomposition filters of two Symlet wavelets (published coefficients, as in PyWavelets).

WAVELETS = {
    'sym2': [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025],
    'sym6': [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
             0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
             -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148],
}

# Preset name -> AugmentPipe kwargs (the `--augpipe` choices of NVlabs train.py).
_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
augpipe_specs = {
    'blit':   dict(_BLIT),
    'geom':   dict(_GEOM),
    'color':  dict(_COLOR),
    'filter': dict(imgfilter=1),
    'noise':  dict(noise=1),
    'cutout': dict(cutout=1),
    'bg':     dict(**_BLIT, **_GEOM),
    'bgc':    dict(**_BLIT, **_GEOM, **_COLOR),
    'bgcf':   dict(**_BLIT, **_GEOM, **_COLOR, imgfilter=1),
    'bgcfn':  dict(**_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1),
    'bgcfnc': dict(**_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1, cutout=1),
}

#----------------------------------------------------------------------------
# Batched homogeneous matrices. Entries are python numbers or [batch] tensors.

def _batched_matrix(rows, batch_size, device):
    """[batch, R, C] float32 matrix whose entry (r, c) is rows[r][c] broadcast over the batch."""
    out = torch.zeros([batch_size, len(rows), len(rows[0])], device=device)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if isinstance(value, torch.Tensor) or value != 0:
                out[:, r, c] = value
    return out


def _translate2d(tx, ty, n, device):
    return _batched_matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], n, device)


def _scale2d(sx, sy, n, device):
    return _batched_matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], n, device)


def _rotate2d(theta, n, device):
    c, s = torch.cos(theta), torch.sin(theta)
    return _batched_matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], n, device)


def _translate3d(t, n, device):
    return _batched_matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], n, device)


def _scale3d(s, n, device):
    return _batched_matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], n, device)


def _rotate3d(axis, theta, n, device):
    """Rotation by `theta` [batch] around the unit vector `axis` (Rodrigues' formula)."""
    x, y, z = (float(a) for a in axis[:3])
    c, s = torch.cos(theta), torch.sin(theta)
    k = 1 - c
    return _batched_matrix([
        [x * x * k + c,     x * y * k - z * s, x * z * k + y * s, 0],
        [y * x * k + z * s, y * y * k + c,     y * z * k - x * s, 0],
        [z * x * k - y * s, z * y * k + x * s, z * z * k + c,     0],
        [0,                 0,                 0,                 1]], n, device)


def _imgfilter_bank():
    """[4, 43] filter bank splitting a signal into 4 octave bands (rows sum to a unit impulse).

    Built from the sym2 wavelet: starting from the impulse, each level upsamples the bank by 2
    (zero insertion), smooths it with the low-pass autocorrelation H(z)H(1/z)/2 and adds the
    high-pass autocorrelation H(-z)H(-1/z)/2 to the centre of the next band's row.
    """
    lo = np.asarray(WAVELETS['sym2'])
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    num_bands = 4
    bank = np.zeros([num_bands, 1])
    bank[0, 0] = 1
    for band in range(1, num_bands):
        up = np.zeros([num_bands, bank.shape[1] * 2 - 1])
        up[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in up])
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start:start + hi2.size] += hi2
    return bank


def _where_identity(changed, transformed, images):
    """Per image: `transformed` where `changed` [batch] (bool) is set, otherwise `images` exactly."""
    return torch.where(changed.reshape([-1, 1, 1, 1]), transformed, images)

#----------------------------------------------------------------------------

@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    """The ADA augmentation pipeline. All multipliers default to 0 (disabled); `p` (a buffer,
    saved with the module's state) scales every probability and is set by the training loop
    (`AdaController` or a fixed `--p`). Construct presets with `AugmentPipe(**augpipe_specs['bgc'])`.
    """

    def __init__(self,
        xflip=0, rotate90=0, xint=0, xint_max=0.125,
        scale=0, rotate=0, aniso=0, xfrac=0, scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125,
        brightness=0, contrast=0, lumaflip=0, hue=0, saturation=0, brightness_std=0.2, contrast_std=0.5, hue_max=1, saturation_std=1,
        imgfilter=0, imgfilter_bands=[1, 1, 1, 1], imgfilter_std=1,
        noise=0, cutout=0, noise_std=0.1, cutout_size=0.5,
    ):
        super().__init__()
        self.register_buffer('p', torch.ones([]))   # overall probability multiplier

        # Pixel blitting: probability multipliers, and the integer-translation range (fraction of the size).
        self.xflip = float(xflip)
        self.rotate90 = float(rotate90)
        self.xint = float(xint)
        self.xint_max = float(xint_max)

        # General geometric transforms: multipliers; log2 std of scalings, rotation range (1 = full
        # circle), std of the fractional translation (fraction of the size).
        self.scale = float(scale)
        self.rotate = float(rotate)
        self.aniso = float(aniso)
        self.xfrac = float(xfrac)
        self.scale_std = float(scale_std)
        self.rotate_max = float(rotate_max)
        self.aniso_std = float(aniso_std)
        self.xfrac_std = float(xfrac_std)

        # Color transforms: multipliers; std of brightness offset, log2 std of contrast and
        # saturation, hue rotation range (1 = full circle).
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.lumaflip = float(lumaflip)
        self.hue = float(hue)
        self.saturation = float(saturation)
        self.brightness_std = float(brightness_std)
        self.contrast_std = float(contrast_std)
        self.hue_max = float(hue_max)
        self.saturation_std = float(saturation_std)

        # Image-space filtering: multiplier, per-band multipliers, log2 std of the band gains.
        self.imgfilter = float(imgfilter)
        self.imgfilter_bands = [float(b) for b in imgfilter_bands]
        self.imgfilter_std = float(imgfilter_std)

        # Corruptions: multipliers; noise std, cutout rectangle size (fraction of the size).
        self.noise = float(noise)
        self.cutout = float(cutout)
        self.noise_std = float(noise_std)
        self.cutout_size = float(cutout_size)

        bank = _imgfilter_bank()
        if len(self.imgfilter_bands) != bank.shape[0]:
            raise ValueError(f'AugmentPipe: imgfilter_bands needs {bank.shape[0]} entries, got {len(self.imgfilter_bands)}')
        self.register_buffer('Hz_geom', upfirdn2d.setup_filter(WAVELETS['sym6']))   # orthogonal low-pass for resampling
        self.register_buffer('Hz_fbank', torch.as_tensor(bank, dtype=torch.float32))  # [bands, taps]

    def extra_repr(self):
        on = [k for k in ('xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac', 'brightness', 'contrast',
                          'lumaflip', 'hue', 'saturation', 'imgfilter', 'noise', 'cutout') if getattr(self, k) > 0]
        return 'enabled=' + ','.join(on)

    def forward(self, images, debug_percentile=None):
        """Augment a batch.

        Args:
            images:           [batch, channels, height, width], channels 1 (L), 3 (RGB) or 4 (RGBA;
                              color transforms touch RGB only). Any float dtype; the output has the
                              same shape, dtype and device.
            debug_percentile: None, or a number in [0, 1] that replaces every random draw by the
                              corresponding percentile and applies every enabled augmentation
                              (for visualising the pipe).
        Returns:
            The augmented batch.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(f'AugmentPipe: images must be a [batch, channels, height, width] tensor, '
                             f'got {type(images).__name__} with shape {list(getattr(images, "shape", []))}')
        batch_size, num_channels, height, width = images.shape
        if num_channels not in (1, 3, 4):
            raise ValueError(f'AugmentPipe: images must have 1 (L), 3 (RGB) or 4 (RGBA) channels, got {num_channels}')
        device = images.device
        if debug_percentile is not None:
            debug_percentile = torch.as_tensor(debug_percentile, dtype=torch.float32, device=device)
        images = self._geometric(images, debug_percentile)
        images = self._color(images, debug_percentile)
        if self.imgfilter > 0:
            images = self._filter(images, debug_percentile)
        images = self._corrupt(images, debug_percentile)
        return images

    #------------------------------------------------------------------
    def _geometric(self, images, pct):
        """Blitting and general geometric transforms as one inverse homography (output pixel -> input pixel)."""
        n, num_channels, height, width = images.shape
        device = images.device
        p = self.p
        ones, zeros = torch.ones([n], device=device), torch.zeros([n], device=device)
        G_inv = None

        def compose(m):
            nonlocal G_inv
            G_inv = m if G_inv is None else G_inv @ m

        # Pixel blitting.
        if self.xflip > 0:
            i = torch.floor(torch.rand([n], device=device) * 2)
            i = torch.where(torch.rand([n], device=device) < self.xflip * p, i, zeros)
            if pct is not None:
                i = torch.full_like(i, torch.floor(pct * 2))
            compose(_scale2d(1 - 2 * i, 1, n, device))
        if self.rotate90 > 0:
            i = torch.floor(torch.rand([n], device=device) * 4)
            i = torch.where(torch.rand([n], device=device) < self.rotate90 * p, i, zeros)
            if pct is not None:
                i = torch.full_like(i, torch.floor(pct * 4))
            compose(_rotate2d(np.pi / 2 * i, n, device))
        if self.xint > 0:
            t = (torch.rand([n, 2], device=device) * 2 - 1) * self.xint_max
            t = torch.where(torch.rand([n, 1], device=device) < self.xint * p, t, torch.zeros_like(t))
            if pct is not None:
                t = torch.full_like(t, (pct * 2 - 1) * self.xint_max)
            compose(_translate2d(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height), n, device))

        # General geometric transforms.
        if self.scale > 0:
            s = torch.exp2(torch.randn([n], device=device) * self.scale_std)
            s = torch.where(torch.rand([n], device=device) < self.scale * p, s, ones)
            if pct is not None:
                s = torch.full_like(s, torch.exp2(torch.erfinv(pct * 2 - 1) * self.scale_std))
            compose(_scale2d(1 / s, 1 / s, n, device))
        p_rot = 1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1))  # pre or post rotation: P = rotate * p
        if self.rotate > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * np.pi * self.rotate_max
            theta = torch.where(torch.rand([n], device=device) < p_rot, theta, zeros)
            if pct is not None:
                theta = torch.full_like(theta, (pct * 2 - 1) * np.pi * self.rotate_max)
            compose(_rotate2d(theta, n, device))  # before anisotropic scaling
        if self.aniso > 0:
            s = torch.exp2(torch.randn([n], device=device) * self.aniso_std)
            s = torch.where(torch.rand([n], device=device) < self.aniso * p, s, ones)
            if pct is not None:
                s = torch.full_like(s, torch.exp2(torch.erfinv(pct * 2 - 1) * self.aniso_std))
            compose(_scale2d(1 / s, s, n, device))
        if self.rotate > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * np.pi * self.rotate_max
            theta = torch.where(torch.rand([n], device=device) < p_rot, theta, zeros)
            if pct is not None:
                theta = torch.zeros_like(theta)
            compose(_rotate2d(theta, n, device))  # after anisotropic scaling
        if self.xfrac > 0:
            t = torch.randn([n, 2], device=device) * self.xfrac_std
            t = torch.where(torch.rand([n, 1], device=device) < self.xfrac * p, t, torch.zeros_like(t))
            if pct is not None:
                t = torch.full_like(t, torch.erfinv(pct * 2 - 1) * self.xfrac_std)
            compose(_translate2d(-t[:, 0] * width, -t[:, 1] * height, n, device))

        if G_inv is None:
            return images
        orig = images
        changed = (G_inv != torch.eye(3, device=device)).flatten(1).any(dim=1)

        # Padding: enough reflected border that every output pixel (plus the filter support)
        # samples inside the padded image, at most one image size per side.
        cx, cy = (width - 1) / 2, (height - 1) / 2
        corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]], device=device)  # [xyz, corner]
        src = (G_inv @ corners)[:, :2, :]                       # [batch, xy, corner]
        src = src.permute(1, 0, 2).flatten(1)                   # [xy, batch * corner]
        extent = torch.cat([-src, src]).max(dim=1).values       # [x0, y0, x1, y1]
        pad_taps = self.Hz_geom.shape[0] // 4
        extent = extent + torch.tensor([pad_taps * 2 - cx, pad_taps * 2 - cy] * 2, device=device)
        extent = extent.clamp(min=0).minimum(torch.tensor([width - 1, height - 1] * 2, device=device))
        mx0, my0, mx1, my1 = (int(v) for v in extent.ceil().to(torch.int64).tolist())  # one host sync, as NVlabs
        images = torch.nn.functional.pad(images, [mx0, mx1, my0, my1], mode='reflect')
        G_inv = _translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, n, device) @ G_inv

        # Upsample 2x; express the transform in the upsampled pixel grid.
        f = self.Hz_geom.to(images.dtype)
        images = upfirdn2d.upsample2d(images, f, up=2)
        up = _scale2d(2, 2, n, device)
        down = _scale2d(0.5, 0.5, n, device)
        G_inv = up @ G_inv @ down
        G_inv = _translate2d(-0.5, -0.5, n, device) @ G_inv @ _translate2d(0.5, 0.5, n, device)

        # Resample with bilinear grid_sample (normalised coordinates, align_corners=False).
        out_h, out_w = (height + pad_taps * 2) * 2, (width + pad_taps * 2) * 2
        G_inv = (_scale2d(2 / images.shape[3], 2 / images.shape[2], n, device) @ G_inv
                 @ _scale2d(out_w / 2, out_h / 2, n, device))
        grid = torch.nn.functional.affine_grid(G_inv[:, :2, :].to(images.dtype), [n, num_channels, out_h, out_w], align_corners=False)
        resampled = torch.nn.functional.grid_sample(images, grid, mode='bilinear', padding_mode='zeros', align_corners=False)

        # Downsample 2x and crop the filter margin.
        resampled = upfirdn2d.downsample2d(resampled, f, down=2, padding=-pad_taps * 2, flip_filter=True)
        return _where_identity(changed, resampled, orig)

    #------------------------------------------------------------------
    def _color(self, images, pct):
        """Brightness, contrast, luma flip, hue and saturation as one 4x4 matrix per image (RGB homogeneous)."""
        n, num_channels, height, width = images.shape
        device = images.device
        p = self.p
        rgb = num_channels > 1
        if not (self.brightness > 0 or self.contrast > 0 or self.lumaflip > 0
                or (rgb and (self.hue > 0 or self.saturation > 0))):
            return images
        eye = torch.eye(4, device=device)
        C = eye.expand(n, 4, 4)
        changed = torch.zeros([n], dtype=torch.bool, device=device)

        if self.brightness > 0:
            b = torch.randn([n], device=device) * self.brightness_std
            b = torch.where(torch.rand([n], device=device) < self.brightness * p, b, torch.zeros_like(b))
            if pct is not None:
                b = torch.full_like(b, torch.erfinv(pct * 2 - 1) * self.brightness_std)
            C = _translate3d(b, n, device) @ C
            changed = changed | (b != 0)
        if self.contrast > 0:
            c = torch.exp2(torch.randn([n], device=device) * self.contrast_std)
            c = torch.where(torch.rand([n], device=device) < self.contrast * p, c, torch.ones_like(c))
            if pct is not None:
                c = torch.full_like(c, torch.exp2(torch.erfinv(pct * 2 - 1) * self.contrast_std))
            C = _scale3d(c, n, device) @ C
            changed = changed | (c != 1)
        luma = torch.tensor([1, 1, 1, 0], dtype=torch.float32, device=device) / np.sqrt(3)  # luma axis
        luma_proj = torch.outer(luma, luma)
        if self.lumaflip > 0:
            i = torch.floor(torch.rand([n, 1, 1], device=device) * 2)
            i = torch.where(torch.rand([n, 1, 1], device=device) < self.lumaflip * p, i, torch.zeros_like(i))
            if pct is not None:
                i = torch.full_like(i, torch.floor(pct * 2))
            C = (eye - 2 * luma_proj * i) @ C  # Householder reflection across the plane normal to luma
            changed = changed | (i.flatten() != 0)
        if self.hue > 0 and rgb:
            theta = (torch.rand([n], device=device) * 2 - 1) * np.pi * self.hue_max
            theta = torch.where(torch.rand([n], device=device) < self.hue * p, theta, torch.zeros_like(theta))
            if pct is not None:
                theta = torch.full_like(theta, (pct * 2 - 1) * np.pi * self.hue_max)
            C = _rotate3d(luma.tolist(), theta, n, device) @ C
            changed = changed | (theta != 0)
        if self.saturation > 0 and rgb:
            s = torch.exp2(torch.randn([n, 1, 1], device=device) * self.saturation_std)
            s = torch.where(torch.rand([n, 1, 1], device=device) < self.saturation * p, s, torch.ones_like(s))
            if pct is not None:
                s = torch.full_like(s, torch.exp2(torch.erfinv(pct * 2 - 1) * self.saturation_std))
            C = (luma_proj + (eye - luma_proj) * s) @ C  # scale the chroma plane
            changed = changed | (s.flatten() != 1)

        C = C.to(images.dtype)
        flat = images.reshape([n, num_channels, height * width])
        if num_channels == 1:
            C = C[:, :3, :].mean(dim=1, keepdim=True)  # [n, 1, 4]: average of the RGB rows
            out = flat * C[:, :, :3].sum(dim=2, keepdim=True) + C[:, :, 3:]
        else:
            out = C[:, :3, :3] @ flat[:, :3] + C[:, :3, 3:]
            if num_channels == 4:
                out = torch.cat([out, flat[:, 3:]], dim=1)  # alpha untouched
        return _where_identity(changed, out.reshape(images.shape), images)

    #------------------------------------------------------------------
    def _filter(self, images, pct):
        """Random amplification of 4 frequency bands, power-normalised to a 1/f spectrum."""
        n, num_channels, height, width = images.shape
        device = images.device
        num_bands = self.Hz_fbank.shape[0]
        expected_power = torch.tensor([10, 1, 1, 1], dtype=torch.float32, device=device) / 13
        gains = torch.ones([n, num_bands], device=device)
        changed = torch.zeros([n], dtype=torch.bool, device=device)
        for i, band_strength in enumerate(self.imgfilter_bands):
            t_i = torch.exp2(torch.randn([n], device=device) * self.imgfilter_std)
            t_i = torch.where(torch.rand([n], device=device) < self.imgfilter * self.p * band_strength, t_i, torch.ones_like(t_i))
            if pct is not None:
                t_i = (torch.full_like(t_i, torch.exp2(torch.erfinv(pct * 2 - 1) * self.imgfilter_std))
                       if band_strength > 0 else torch.ones_like(t_i))
            changed = changed | (t_i != 1)
            t = torch.ones([n, num_bands], device=device)
            t[:, i] = t_i
            t = t / (expected_power * t.square()).sum(dim=-1, keepdim=True).sqrt()  # keep expected power
            gains = gains * t

        # Separable filter per image and channel, applied as two grouped 1-D convolutions.
        taps = (gains @ self.Hz_fbank.float()).to(images.dtype)              # [n, taps]
        taps = taps.unsqueeze(1).repeat([1, num_channels, 1]).reshape([n * num_channels, 1, -1])
        pad = self.Hz_fbank.shape[1] // 2
        x = _reflect_pad(images.reshape([1, n * num_channels, height, width]), pad)
        x = torch.nn.functional.conv2d(x, taps.unsqueeze(2), groups=n * num_channels)
        x = torch.nn.functional.conv2d(x, taps.unsqueeze(3), groups=n * num_channels)
        return _where_identity(changed, x.reshape(images.shape), images)

    #------------------------------------------------------------------
    def _corrupt(self, images, pct):
        """Additive Gaussian RGB noise and cutout (zeroed rectangle)."""
        n, num_channels, height, width = images.shape
        device = images.device
        if self.noise > 0:
            sigma = torch.randn([n, 1, 1, 1], device=device).abs() * self.noise_std
            sigma = torch.where(torch.rand([n, 1, 1, 1], device=device) < self.noise * self.p, sigma, torch.zeros_like(sigma))
            if pct is not None:
                sigma = torch.full_like(sigma, torch.erfinv(pct) * self.noise_std)
            images = images + torch.randn([n, num_channels, height, width], device=device).to(images.dtype) * sigma.to(images.dtype)
        if self.cutout > 0:
            size = torch.full([n, 2, 1, 1, 1], self.cutout_size, device=device)
            size = torch.where(torch.rand([n, 1, 1, 1, 1], device=device) < self.cutout * self.p, size, torch.zeros_like(size))
            center = torch.rand([n, 2, 1, 1, 1], device=device)
            if pct is not None:
                size = torch.full_like(size, self.cutout_size)
                center = torch.full_like(center, pct)
            xs = torch.arange(width, device=device).reshape([1, 1, 1, -1])
            ys = torch.arange(height, device=device).reshape([1, 1, -1, 1])
            keep_x = ((xs + 0.5) / width - center[:, 0]).abs() >= size[:, 0] / 2
            keep_y = ((ys + 0.5) / height - center[:, 1]).abs() >= size[:, 1] / 2
            images = images * torch.logical_or(keep_x, keep_y).to(images.dtype)
        return images


def _reflect_pad(x, pad):
    """Reflect padding by `pad` on all four sides, also when `pad` exceeds the image size
    (repeated mirroring; identical to one reflect pad when it fits, as for images >= 32px)."""
    while pad > 0:
        step = min(pad, x.shape[2] - 1, x.shape[3] - 1)
        if step < 1:
            raise ValueError(f'AugmentPipe: cannot reflect-pad a {x.shape[2]}x{x.shape[3]} image')
        x = torch.nn.functional.pad(x, [step] * 4, mode='reflect')
        pad -= step
    return x

#----------------------------------------------------------------------------

class AdaController:
    """Adaptive augmentation probability (ADA, section 3 of the paper).

    Accumulates sign(D(real)) on the device (`accumulate`, called by the loss whenever it reports
    'Loss/signs/real'); every `interval` calls of `update` it moves p by
    sign(mean_sign - target) * batch_size * interval / (speed_kimg * 1000), i.e. p can go from 0
    to 1 in `speed_kimg` thousand real images, and clamps p to [0, 1]. No host sync: the
    adjustment is computed and applied on the device. With torch.distributed initialised, the
    sign sums are all-reduced so every rank moves p identically.

    Args:
        target:     target value of E[sign(D(real))] (the r_t heuristic), 0.6 in the paper.
        interval:   adjust p every this many `update` calls (minibatches).
        speed_kimg: thousands of images over which p can go from 0 to 1.
        batch_size: total (all ranks) images per minibatch.
    """

    def __init__(self, target=0.6, interval=4, speed_kimg=500, batch_size=None):
        if batch_size is None or int(batch_size) <= 0:
            raise ValueError(f'AdaController: batch_size must be a positive integer (the total batch), got {batch_size!r}')
        if int(interval) <= 0 or float(speed_kimg) <= 0:
            raise ValueError(f'AdaController: interval and speed_kimg must be positive, got {interval!r}, {speed_kimg!r}')
        self.target = float(target)
        self.interval = int(interval)
        self.speed_kimg = float(speed_kimg)
        self.batch_size = int(batch_size)
        self.num_updates = 0                                        # update() calls so far
        self._sums = torch.zeros([2], dtype=torch.float64)          # [num_signs, sum_of_signs]; follows the logits' device

    @property
    def step_size(self):
        """Change of p per adjustment."""
        return self.batch_size * self.interval / (self.speed_kimg * 1000)

    def accumulate(self, real_logits):
        """Add sign(real_logits) (any shape, on the device) to the running sums."""
        signs = real_logits.detach().sign().flatten().to(torch.float64)
        if self._sums.device != signs.device:
            self._sums = self._sums.to(signs.device)  # once: afterwards everything stays on the device
        self._sums += torch.stack([torch.ones_like(signs).sum(), signs.sum()])

    def update(self, augment_pipe):
        """Call once per minibatch; every `interval` calls adjusts `augment_pipe.p` in place.

        Returns the new p as a 0-d device tensor. Nothing is reported here: as in NVlabs, the
        training loop reports 'Progress/augment' once per tick (the value at the tick's end).
        """
        self.num_updates += 1
        if self.num_updates % self.interval == 0:
            sums = self._sums.to(augment_pipe.p.device)
            if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
                sums = sums.clone()
                torch.distributed.all_reduce(sums)
            mean_sign = sums[1] / sums[0].clamp(min=1)
            adjust = torch.sign(mean_sign - self.target) * self.step_size
            adjust = torch.where(sums[0] > 0, adjust, torch.zeros_like(adjust))  # nothing seen: keep p
            new_p = (augment_pipe.p + adjust.to(augment_pipe.p.device, augment_pipe.p.dtype)).clamp(0, 1)
            augment_pipe.p.copy_(new_p)
            self._sums.zero_()
        return augment_pipe.p

    def state_dict(self):
        return {'num_updates': self.num_updates, 'sums': self._sums.detach().cpu().clone(),
                'target': self.target, 'interval': self.interval, 'speed_kimg': self.speed_kimg, 'batch_size': self.batch_size}

    def load_state_dict(self, state):
        missing = {'num_updates', 'sums'} - set(state)
        if missing:
            raise KeyError(f'AdaController.load_state_dict: state lacks {sorted(missing)}')
        self.num_updates = int(state['num_updates'])
        self._sums.copy_(torch.as_tensor(state['sums'], dtype=torch.float64).to(self._sums.device))

#----------------------------------------------------------------------------
