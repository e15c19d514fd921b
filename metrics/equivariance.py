"""Equivariance metrics EQ-T (integer translation), EQ-T_frac (fractional translation) and EQ-R (rotation)
from "Alias-Free Generative Adversarial Networks" (Karras et al. 2021, appendix E), as NVlabs defines them.

For each sample, the generator renders `orig` with the identity input transform and `img` with the input
transform set to the inverse of an image-space operation T (translation by t: M[:2, 2] = -t; rotation by
alpha: M = rotation_matrix(-alpha)). The image operators below apply T to `orig`; the squared error against
`img` is summed over the pixels (and channels) the operator can produce exactly (its mask):
    EQ-T      t uniform in [-0.125, 0.125]^2 (fraction of the image), rounded to whole pixels; exact shift.
    EQ-T_frac t as above, not rounded; separable Lanczos (a = 3) interpolation.
    EQ-R      alpha uniform in [-pi, pi] (rotate_max = 1 half-turn); `orig` is rotated by a band-limited
              resampling, and `img` gets the same frequency content without moving ("pseudo-rotation"),
              compared over the product of both masks.
PSNR = 20 log10(2) - 10 log10(MSE) in dB (the image range [-1, 1] has peak-to-peak 2), where MSE is pooled:
the sum of squared errors of all samples over the sum of their masks (not a mean of per-image PSNRs).
An exactly equivariant generator has MSE 0 and PSNR +inf.

Coordinates: image units, x to the right (columns) and y down (rows), origin at the image centre, the image
spanning [-0.5, 0.5] on both axes; pixel (i, j) has its centre at ((j + 0.5) / W - 0.5, (i + 0.5) / H - 0.5).
The StyleGAN3 input transform and the affine matrices here use these units, so a matrix `mat` maps the
output image to itself as out(p) = in(mat^-1 p).

Randomness: global batch b draws its latents and labels per item (metric_utils.item_latents and
LabelSource) and its translations, angle and noise from a generator seeded with
metric_utils.stream_seed(seed, b, purpose=3), so any number of ranks produce the same per-batch sums; the
sums are added in global batch order in float64.
"""

import copy

import numpy as np
import torch

from metrics import metric_utils
from ops import upfirdn2d

#----------------------------------------------------------------------------
# Filter primitives.

def sinc(x):
    """Normalized sinc, sin(pi x) / (pi x), with sinc(0) = 1."""
    y = x * np.pi
    safe = torch.where(y == 0, torch.ones_like(y), y)
    return torch.where(y == 0, torch.ones_like(y), torch.sin(safe) / safe)


def lanczos_window(x, a):
    """Lanczos window of support a: sinc(x / a) for |x| < a, else 0."""
    return torch.where(x.abs() < a, sinc(x / a), torch.zeros_like(x))


def rotation_matrix(angle, dtype=torch.float64, device=None):
    """3x3 matrix [[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]] of `angle` (radians): in the y-down image
    coordinates, the image operation out(p) = in(mat^-1 p) turns content clockwise for a positive angle."""
    angle = torch.as_tensor(angle, dtype=dtype, device=device)
    c, s = angle.cos(), angle.sin()
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    return torch.stack([torch.stack([c, s, zero]), torch.stack([-s, c, zero]), torch.stack([zero, zero, one])])

#----------------------------------------------------------------------------
# Image operators. Each takes x [N, C, H, W] and returns (y, mask), both [N, C, H, W] in x's dtype; the mask
# is 1 where y is the operator's exact output and 0 where it would need pixels outside x.

def translate_integer(x, tx, ty):
    """Shift x by round(tx * W) columns and round(ty * H) rows (tx, ty in image units; content moves
    right/down for positive values): y[i, j] = x[i - dy, j - dx], the operator T_x of appendix E.1."""
    H, W = x.shape[2], x.shape[3]
    dx, dy = int(round(float(tx) * W)), int(round(float(ty) * H))
    y = torch.zeros_like(x)
    mask = torch.zeros_like(x)
    if abs(dx) < W and abs(dy) < H:
        dst = (slice(None), slice(None), slice(max(dy, 0), H + min(dy, 0)), slice(max(dx, 0), W + min(dx, 0)))
        y[dst] = x[:, :, max(-dy, 0): H + min(-dy, 0), max(-dx, 0): W + min(-dx, 0)]
        mask[dst] = 1
    return y, mask


def _shift_taps(frac, a, dtype, device):
    """Normalized Lanczos weights w[k] for source offsets d = k - (a - 1), k = 0 .. 2a-1: the sample at
    position p - (int + frac) is sum_k w[k] * x[p - int - d_k]."""
    d = torch.arange(-(a - 1), a + 1, dtype=torch.float64, device=device)
    w = sinc(d - frac) * lanczos_window(d - frac, a)
    return (w / w.sum()).to(dtype)


def _shift_axis(x, shift, a, dim):
    """Lanczos-interpolated shift of x along `dim` (3: columns, 2: rows) by `shift` pixels: returns
    (y, lo, hi) with y[p] = sum_d w_d x[p - n - d] (n = floor(shift)), exact for p in [lo, hi)."""
    size = x.shape[dim]
    n = int(np.floor(shift))
    w = _shift_taps(shift - n, a, x.dtype, x.device)
    y = torch.zeros_like(x)
    for k, d in enumerate(range(-(a - 1), a + 1)):
        s = n + d  # y[p] += w[k] * x[p - s]
        if abs(s) >= size:
            continue
        src = x.narrow(dim, max(-s, 0), size - abs(s))
        y.narrow(dim, max(s, 0), size - abs(s)).add_(src * w[k])
    return y, max(n + a, 0), min(n - a + 1 + size, size)


def translate_fractional(x, tx, ty, a=3):
    """Band-limited translation by (tx * W, ty * H) pixels (tx, ty in image units): separable Lanczos
    interpolation y(p) = sum_q L(p - shift - q) x(q) with L(u) = sinc(u) sinc(u / a) on |u| < a, the
    weights normalized to sum 1 (the operator of appendix E.2). Valid where every tap lies inside x."""
    H, W = x.shape[2], x.shape[3]
    y, x0, x1 = _shift_axis(x, float(tx) * W, a, dim=3)
    y, y0, y1 = _shift_axis(y, float(ty) * H, a, dim=2)
    mask = torch.zeros_like(x)
    if x0 < x1 and y0 < y1:
        mask[:, :, y0:y1, x0:x1] = 1
    return y, mask


def bandlimit_filter(mat, a=3, radius=6, up=4, grid_radius=64, dtype=torch.float64, device=None):
    """Oriented low-pass FIR filter for resampling through the affine map `mat` ([3, 3] or [2, 2]; only the
    linear part matters): the lowpass of the input pixel grid (sinc(x) sinc(y)) convolved with the lowpass
    of the output grid (the same at mat[:2, :2] applied to (x, y)), times the convolution of the two
    correspondingly oriented Lanczos windows of support a.

    The functions are sampled at spacing 1/up on a periodic grid of 2 * grid_radius * up - 1 points per
    axis centred at 0 and convolved circularly (FFT). The central (2 * radius * up - 1)^2 taps are kept, and
    each of the up x up polyphase components (taps congruent mod up) is scaled to sum 1 / up^2, so every
    output sample of an `up`-fold upsampling (gain up^2) is a weighted average. Returns [K, K] in `dtype`.
    """
    if not (0 < a <= radius < grid_radius) or up < 1:
        raise ValueError(f'bandlimit_filter: need 0 < a <= radius < grid_radius and up >= 1, got a={a}, radius={radius}, '
                         f'grid_radius={grid_radius}, up={up}')
    lin = torch.as_tensor(mat, dtype=torch.float64, device=device)[:2, :2]
    n = 2 * grid_radius * up - 1
    pos = torch.fft.ifftshift(torch.arange(n, dtype=torch.float64, device=device) - (n // 2)) / up  # 0 at index 0
    yi, xi = torch.meshgrid(pos, pos, indexing='ij')
    xo = lin[0, 0] * xi + lin[0, 1] * yi
    yo = lin[1, 0] * xi + lin[1, 1] * yi

    def circular_conv(u, v):
        return torch.fft.irfft2(torch.fft.rfft2(u) * torch.fft.rfft2(v), s=u.shape)

    lowpass = circular_conv(sinc(xi) * sinc(yi), sinc(xo) * sinc(yo))
    window = circular_conv(lanczos_window(xi, a) * lanczos_window(yi, a), lanczos_window(xo, a) * lanczos_window(yo, a))
    f = torch.fft.fftshift(lowpass * window)  # centre at n // 2
    half = radius * up - 1
    f = f[n // 2 - half: n // 2 + half + 1, n // 2 - half: n // 2 + half + 1]
    for py in range(up):
        for px in range(up):
            f[py::up, px::up] /= f[py::up, px::up].sum() * up * up
    return f.to(dtype)


def affine_resample(x, mat, up=4, a=3, radius=None):
    """Band-limited affine resampling out(p) = x(mat^-1 p) (image units, see the module docstring):
    upsample x by `up` with `bandlimit_filter(mat)` (zeros outside x), then sample the upsampled image
    bilinearly at mat^-1 p. Valid where the nearest upsampled pixel lies at least 2 * (filter radius) + 1
    upsampled pixels inside it. Returns (y, mask) like the other operators."""
    if up < 2 or up % 2:
        raise ValueError(f'affine_resample: up must be an even factor >= 2, got {up}')
    N, C, H, W = x.shape
    inv = torch.linalg.inv(torch.as_tensor(mat, dtype=torch.float64, device=x.device))
    f = bandlimit_filter(mat, a=a, radius=radius or 2 * a, up=up, dtype=x.dtype, device=x.device)
    p = f.shape[0] // 2
    big = upfirdn2d.upsample2d(x, f, up=up, padding=p)  # pixel u of an axis is centred at continuous (u - p) / up
    BH, BW = big.shape[2], big.shape[3]

    # Source position of every output pixel, as a fractional index into `big`.
    px = (torch.arange(W, dtype=torch.float64, device=x.device) + 0.5) / W - 0.5
    py = (torch.arange(H, dtype=torch.float64, device=x.device) + 0.5) / H - 0.5
    gy, gx = torch.meshgrid(py, px, indexing='ij')
    sx = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
    sy = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
    ux = (sx + 0.5) * W * up + p
    uy = (sy + 0.5) * H * up + p

    # Bilinear samples (grid_sample, align_corners=False: normalized = (2u + 1) / size - 1).
    grid = torch.stack([(2 * ux + 1) / BW - 1, (2 * uy + 1) / BH - 1], dim=2).to(x.dtype)
    y = torch.nn.functional.grid_sample(big, grid.unsqueeze(0).expand(N, H, W, 2), mode='bilinear',
                                        padding_mode='zeros', align_corners=False)
    c = 2 * p + 1
    rx, ry = torch.round(ux), torch.round(uy)
    valid = (rx >= c) & (rx <= BW - 1 - c) & (ry >= c) & (ry <= BH - 1 - c)
    mask = valid.to(x.dtype).expand(N, C, H, W).clone()
    return y, mask


def rotate(x, angle, a=3, up=4):
    """Band-limited rotation by `angle` radians (operator R_alpha of appendix E.3): affine_resample with
    rotation_matrix(angle) and a filter of radius 2a."""
    return affine_resample(x, rotation_matrix(angle, device=x.device), up=up, a=a, radius=2 * a)


def pseudo_rotate(x, angle, a=3):
    """The frequency content of a rotation by `angle` without moving the image (operator R*_alpha of
    appendix E.3): x filtered with bandlimit_filter(rotation_matrix(-angle), up=1), same size. Valid
    where the filter footprint lies inside x."""
    f = bandlimit_filter(rotation_matrix(-angle, device=x.device), a=a, radius=2 * a, up=1, dtype=x.dtype, device=x.device)
    y = upfirdn2d.filter2d(x, f)
    c = f.shape[0] // 2
    mask = torch.zeros_like(x)
    mask[:, :, c:-c, c:-c] = 1
    return y, mask

#----------------------------------------------------------------------------
# The metric.

KINDS = ('int', 'frac', 'rot')


def psnr_from_sums(err_sum, mask_sum):
    """PSNR in dB of the pooled MSE err_sum / mask_sum for images in [-1, 1] (peak-to-peak 2)."""
    err_sum, mask_sum = float(err_sum), float(mask_sum)
    if mask_sum <= 0:
        raise ValueError('equivariance PSNR: no valid pixels (every mask is empty)')
    mse = err_sum / mask_sum
    return float('inf') if mse == 0 else float(20 * np.log10(2) - 10 * np.log10(mse))


def input_transform(G):
    """G.synthesis.input.transform (the [3, 3] StyleGAN3 input transform buffer) or None."""
    return getattr(getattr(getattr(G, 'synthesis', None), 'input', None), 'transform', None)


def draw_transforms(gen, img_resolution, translate_max=0.125, rotate_max=1.0):
    """The random operations of one batch, always drawn in this order from the CPU generator `gen`:
    integer translation (rounded to 1 / img_resolution), fractional translation (both uniform in
    +-translate_max per axis, image units) and an angle uniform in +-rotate_max * pi radians."""
    t_int = (torch.rand([2], generator=gen, dtype=torch.float64) * 2 - 1) * translate_max
    t_int = torch.round(t_int * img_resolution) / img_resolution
    t_frac = (torch.rand([2], generator=gen, dtype=torch.float64) * 2 - 1) * translate_max
    angle = float((torch.rand([], generator=gen, dtype=torch.float64) * 2 - 1) * (rotate_max * np.pi))
    return dict(int=t_int.tolist(), frac=t_frac.tolist(), rot=angle)


@torch.no_grad()
def batch_sums(G, ws, draws, kinds, synthesis_kwargs={}):
    """Float64 [2 * len(kinds)] = (squared-error sum, mask sum) per kind for one batch of ws, with the
    operations in `draws` (see draw_transforms). G.synthesis.input.transform is overwritten."""
    M = input_transform(G)
    eye = torch.eye(3, dtype=M.dtype, device=M.device)

    def render(mat):
        M.copy_(mat)
        return G.synthesis(ws=ws, noise_mode='const', force_fp32=True, **synthesis_kwargs)

    orig = render(eye)
    sums = []
    for kind in kinds:
        if kind in ('int', 'frac'):
            tx, ty = draws[kind]
            mat = eye.clone()
            mat[0, 2], mat[1, 2] = -tx, -ty
            img = render(mat)
            op = translate_integer if kind == 'int' else translate_fractional
            ref, mask = op(orig, tx, ty)
        elif kind == 'rot':
            angle = draws['rot']
            img = render(rotation_matrix(-angle).to(M))
            ref, ref_mask = rotate(orig, angle)
            img, img_mask = pseudo_rotate(img, angle)
            mask = ref_mask * img_mask
        else:
            raise ValueError(f'equivariance: unknown kind {kind!r}; expected one of {KINDS}')
        sums += [((ref - img).square() * mask).to(torch.float64).sum(), mask.to(torch.float64).sum()]
    return torch.stack(sums).cpu()


def compute_equivariance_metrics(opts, num_samples, batch_size=4, translate_max=0.125, rotate_max=1.0, kinds=('int',)):
    """PSNRs (dB) of the requested kinds ('int', 'frac', 'rot') over ceil(num_samples / batch_size) batches;
    a float for one kind, else a tuple in the order of `kinds`. Every rank returns the same values."""
    kinds = tuple(kinds)
    if not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f'equivariance: kinds must be a non-empty subset of {KINDS}, got {kinds}')
    if input_transform(opts.G) is None:
        raise ValueError('equivariance metrics need a StyleGAN3 generator (G.synthesis.input.transform); this network has no input transform')
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    labels = metric_utils.LabelSource(opts)
    W, r = opts.num_gpus, opts.rank
    num_batches = (num_samples - 1) // batch_size + 1
    per_batch = []
    progress = opts.progress.sub(tag='eq sampling', num_items=num_batches * batch_size)
    gen = torch.Generator()
    for step in range((num_batches - 1) // W + 1):
        progress.update(step * W * batch_size)
        b = step * W + r  # global batch index
        s = torch.zeros([2 * len(kinds)], dtype=torch.float64)
        if b < num_batches:
            gen.manual_seed(metric_utils.stream_seed(opts.seed, b, purpose=3))
            draws = draw_transforms(gen, G.img_resolution, translate_max, rotate_max)
            for name, buf in G.named_buffers():
                if name.endswith('.noise_const'):
                    buf.copy_(torch.randn(buf.shape, generator=gen).to(buf.device, buf.dtype))
            idx = [b * batch_size + j for j in range(batch_size)]
            z = metric_utils.item_latents(idx, G.z_dim, opts.seed).to(opts.device)
            ws = G.mapping(z=z, c=labels(idx))
            s = batch_sums(G, ws, draws, kinds, opts.G_kwargs)
        for src in range(W):  # collect in global batch order
            y = s.to(opts.device)
            if W > 1:
                y = y.clone()
                torch.distributed.broadcast(y, src=src)
            if step * W + src < num_batches:
                per_batch.append(y.cpu())
    progress.update(num_batches * batch_size)
    total = torch.stack(per_batch).sum(dim=0)
    psnrs = tuple(psnr_from_sums(total[2 * i], total[2 * i + 1]) for i in range(len(kinds)))
    return psnrs[0] if len(psnrs) == 1 else psnrs

#----------------------------------------------------------------------------
