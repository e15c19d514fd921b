"""Pad, upsample, FIR-filter and downsample batches of 2D images (the resampling op of StyleGAN2).

Semantics and signatures are those of NVlabs `torch_utils/ops/upfirdn2d.py`. The reference path
(`impl='ref'`) never multiplies the inserted zeros: without upsampling it is one strided
depthwise convolution of the padded input (the discarded pixels are never computed); with
upsampling it is a strided depthwise transposed convolution, i.e. the `up_x * up_y` polyphase
sub-filters applied at input resolution and interleaved, followed by a crop (and decimation, in
the rare case of up and down together). This gives the same numbers as the textbook
zero-stuff / pad / filter / decimate sequence (kept as `_upfirdn2d_naive` for tests and
benchmarks) at a fraction of the cost, and is differentiable to any order through standard
PyTorch ops.
"""

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc
from . import _impl

#----------------------------------------------------------------------------
# Argument parsing shared with conv2d_resample.

def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _parse_scaling(scaling, name='up'):
    """Return (sx, sy) from an int or an (x, y) pair of ints >= 1."""
    if _is_int(scaling):
        scaling = (scaling, scaling)
    if not isinstance(scaling, (list, tuple)) or len(scaling) != 2 or not all(_is_int(s) for s in scaling):
        raise ValueError(f'{name}: expected an int or a pair of ints (x, y), got {scaling!r}')
    sx, sy = int(scaling[0]), int(scaling[1])
    if sx < 1 or sy < 1:
        raise ValueError(f'{name}: factors must be >= 1, got {scaling!r}')
    return sx, sy


def _parse_padding(padding):
    """Return (padx0, padx1, pady0, pady1) from an int, an (x, y) pair or a 4-tuple of ints."""
    if _is_int(padding):
        padding = (padding, padding)
    if not isinstance(padding, (list, tuple)) or len(padding) not in (2, 4) or not all(_is_int(p) for p in padding):
        raise ValueError(f'padding: expected an int, a pair (x, y) or a 4-tuple (x_before, x_after, y_before, y_after) of ints, got {padding!r}')
    if len(padding) == 2:
        padx, pady = padding
        padding = (padx, padx, pady, pady)
    return tuple(int(p) for p in padding)


def _get_filter_size(f):
    """Return (filter_width, filter_height) of a 1-D (separable) or 2-D filter; (1, 1) for None."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        got = f'{f.ndim}-D tensor of shape {list(f.shape)}' if isinstance(f, torch.Tensor) else type(f).__name__
        raise ValueError(f'f: expected a 1-D (separable) or 2-D filter tensor, or None; got {got} (prepare it with setup_filter())')
    with misc.suppress_tracer_warnings():  # filter sizes are treated as constants
        fw = int(f.shape[-1])
        fh = int(f.shape[0])
    if fw < 1 or fh < 1:
        raise ValueError(f'f: filter must not be empty, got shape {list(f.shape)}')
    return fw, fh

#----------------------------------------------------------------------------

def setup_filter(f, device=torch.device('cpu'), normalize=True, flip_filter=False, gain=1, separable=None):
    r"""Prepare a 2D FIR filter for `upfirdn2d()`.

    Args:
        f:           Tensor, numpy array or list of shape `[filter_height, filter_width]`
                     (non-separable), `[filter_taps]` (separable), `[]` (impulse), or `None`
                     (identity).
        device:      Device of the result (default: cpu).
        normalize:   Scale the filter so that it keeps the magnitude of a constant (DC) signal.
        flip_filter: Flip the filter (default: False).
        gain:        Overall scaling of the signal magnitude (default: 1).
        separable:   Return a separable (1-D) filter? Default: automatically, i.e. when `f` is
                     1-D with at least 8 taps.

    Returns:
        Float32 tensor of shape `[filter_height, filter_width]` (non-separable) or
        `[filter_taps]` (separable). The caller's tensor is never modified.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2):
        raise ValueError(f'f: expected a filter with 0, 1 or 2 dimensions, got shape {list(f.shape)}')
    if f.numel() == 0:
        raise ValueError('f: filter must not be empty')
    if f.ndim == 0:
        f = f.reshape(1)

    # Separable?
    if separable is None:
        separable = (f.ndim == 1 and f.numel() >= 8)
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError(f'f: separable=True needs a 1-D filter, got shape {list(f.shape)}')

    # Normalize, flip, gain, device.
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)

#----------------------------------------------------------------------------

def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl='auto'):
    r"""Pad, upsample, filter and downsample a batch of 2D images.

    For each channel: (1) upsample by inserting `up - 1` zeros after each pixel, (2) pad with
    zeros (negative padding crops), (3) convolve with the FIR filter `f`, keeping only the
    output pixels whose footprint lies inside the padded image, (4) keep every `down`-th pixel.
    This is `scipy.signal.upfirdn()` in 2D. Separable (1-D) filters are applied along x and then
    along y, each pass scaled by `gain ** 0.5`.

    Gradients of any order work on the reference path; the CUDA path supports first and second
    order (what R1 and path-length regularization need).

    Args:
        x:           Input tensor of shape `[batch_size, num_channels, in_height, in_width]`,
                     fp64 (reference only), fp32, fp16 or bf16, contiguous or channels_last.
        f:           FIR filter of shape `[filter_height, filter_width]` (non-separable),
                     `[filter_taps]` (separable), or `None` (identity), usually from
                     `setup_filter()`.
        up:          Integer upsampling factor, an int or a pair `[x, y]` (default: 1).
        down:        Integer downsampling factor, an int or a pair `[x, y]` (default: 1).
        padding:     Padding with respect to the upsampled image: an int, a pair `[x, y]` or
                     `[x_before, x_after, y_before, y_after]` (default: 0).
        flip_filter: False = convolution, True = correlation (default: False).
        gain:        Overall scaling of the signal magnitude (default: 1).
        impl:        'auto', 'ref' or 'cuda' (see `ops._impl.resolve`).

    Returns:
        Tensor of shape `[batch_size, num_channels, out_height, out_width]` with the dtype and
        memory format of `x`, where `out_width = (in_width * up_x + padx0 + padx1 -
        filter_width) // down_x + 1` (same for the height).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'x: expected a tensor, got {type(x).__name__}')
    misc.assert_rank(x, 4, name='x')
    upx, upy = _parse_scaling(up, 'up')
    downx, downy = _parse_scaling(down, 'down')
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)

    # The padded, upsampled image must hold at least one filter footprint.
    with misc.suppress_tracer_warnings():
        in_height, in_width = int(x.shape[2]), int(x.shape[3])
    up_w = in_width * upx + padx0 + padx1
    up_h = in_height * upy + pady0 + pady1
    if up_w < fw or up_h < fh:
        raise ValueError(f'upfirdn2d: the upsampled, padded image ({up_h}x{up_w}) is smaller than the filter ({fh}x{fw}); '
                         f'x has shape {list(x.shape)}, up=({upx}, {upy}), padding=({padx0}, {padx1}, {pady0}, {pady1})')
    if f is None:
        f = misc.constant(np.ones([1, 1], dtype=np.float32), dtype=torch.float32, device=x.device)

    if _impl.resolve('upfirdn2d', impl, x) == 'cuda':
        from . import _cuda_upfirdn2d
        f = f.to(device=x.device, dtype=torch.float32)
        return _cuda_upfirdn2d.upfirdn2d(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, bool(flip_filter), float(gain))
    return _upfirdn2d_ref(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, bool(flip_filter), float(gain))

#----------------------------------------------------------------------------
# Reference implementation.

def _memory_format(x):
    return torch.channels_last if (x.ndim == 4 and x.stride(1) == 1 and x.shape[1] > 1) else torch.contiguous_format


def _pad_window(x, xstart, xend, ystart, yend):
    """Window [ystart, yend) x [xstart, xend) of `x` zero-extended in its last two dims."""
    h, w = x.shape[-2], x.shape[-1]
    px0, px1, py0, py1 = -xstart, xend - w, -ystart, yend - h
    if px0 > 0 or px1 > 0 or py0 > 0 or py1 > 0:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    return x[..., max(-py0, 0) : x.shape[-2] - max(-py1, 0), max(-px0, 0) : x.shape[-1] - max(-px1, 0)]


def _upfirdn2d_ref(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain):
    """Pure-PyTorch upfirdn2d on parsed arguments (see `_resample` for the formulation)."""
    memory_format = _memory_format(x)
    f = f.to(device=x.device)
    f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype)
    if flip_filter:
        f = f.flip(list(range(f.ndim)))  # from here on, f is applied as a true convolution
    if f.ndim == 2:
        y = _resample(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1)
    else:
        y = _resample(x, f.unsqueeze(0), upx, 1, downx, 1, padx0, padx1, 0, 0)
        y = _resample(y, f.unsqueeze(1), 1, upy, 1, downy, 0, 0, pady0, pady1)
    return y.contiguous(memory_format=memory_format)


def _resample(x, h, upx, upy, downx, downy, padx0, padx1, pady0, pady1):
    """Convolve the zero-stuffed, padded `x` with 2-D kernel `h` [kh, kw] and decimate.

    Along one axis, output o is sum_t h[t] * u[o*down - pad0 + K-1 - t], where u is the
    zero-stuffed input. Without upsampling this is a strided depthwise convolution of the
    padded input, so the discarded pixels are never computed. With upsampling it is a window
    of the transposed convolution T[j] = sum_i x[i] * h[j - up*i], starting at j = K-1-pad0
    with step `down`: the transposed convolution evaluates the `up` polyphase sub-filters at
    input resolution and interleaves them, so the inserted zeros are never multiplied.
    """
    batch_size, num_channels, in_h, in_w = x.shape
    kh, kw = h.shape
    out_w = (in_w * upx + padx0 + padx1 - kw) // downx + 1
    out_h = (in_h * upy + pady0 + pady1 - kh) // downy + 1
    weight = h[None, None].expand(num_channels, 1, kh, kw).contiguous()

    # No upsampling: strided convolution over the padded input window.
    if upx == 1 and upy == 1:
        xs, xe = -padx0, (out_w - 1) * downx - padx0 + kw
        ys, ye = -pady0, (out_h - 1) * downy - pady0 + kh
        if kh == 1 and kw == 1:
            return _pad_window(x, xs, xe, ys, ye)[:, :, ::downy, ::downx] * h.reshape([])
        cx = max(0, min(-xs, xe - in_w))  # zero padding the convolution can do itself
        cy = max(0, min(-ys, ye - in_h))
        x = _pad_window(x, xs + cx, xe - cx, ys + cy, ye - cy)
        return F.conv2d(x, weight.flip([2, 3]), stride=(downy, downx), padding=(cy, cx), groups=num_channels)

    # Upsampling: window [start, end) of the transposed convolution, cropped symmetrically by
    # the convolution itself where possible.
    xs, xe = kw - 1 - padx0, kw - 1 - padx0 + (out_w - 1) * downx + 1
    ys, ye = kh - 1 - pady0, kh - 1 - pady0 + (out_h - 1) * downy + 1
    tw, th = (in_w - 1) * upx + kw, (in_h - 1) * upy + kh  # full transposed-conv size
    cx = max(0, min(xs, tw - xe))
    cy = max(0, min(ys, th - ye))
    y = F.conv_transpose2d(x, weight, stride=(upy, upx), padding=(cy, cx), groups=num_channels)
    y = _pad_window(y, xs - cx, xe - cx, ys - cy, ye - cy)
    return y[:, :, ::downy, ::downx]

#----------------------------------------------------------------------------
# Textbook formulation, kept for differential tests and benchmarks.

def _upfirdn2d_naive(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Zero-stuff, pad, full-resolution depthwise convolution, then discard pixels."""
    misc.assert_rank(x, 4, name='x')
    upx, upy = _parse_scaling(up, 'up')
    downx, downy = _parse_scaling(down, 'down')
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    batch_size, num_channels, in_h, in_w = x.shape

    # Upsample by inserting zeros.
    x = x.reshape(batch_size, num_channels, in_h, 1, in_w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(batch_size, num_channels, in_h * upy, in_w * upx)

    # Pad or crop.
    x = _pad_window(x, -padx0, in_w * upx + padx1, -pady0, in_h * upy + pady1)

    # Filter (flipped, since conv2d correlates).
    f = (f.to(x.device) * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([num_channels, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=num_channels)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=num_channels)
        x = F.conv2d(x, f.unsqueeze(3), groups=num_channels)

    # Downsample by keeping every down-th pixel.
    return x[:, :, ::downy, ::downx]

#----------------------------------------------------------------------------
# Convenience wrappers with the NVlabs default paddings.

def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl='auto'):
    r"""Filter a batch of 2D images with a FIR filter, keeping their size.

    User padding is applied on top of the size-preserving padding (negative crops).

    Args:
        x:           Input tensor `[batch_size, num_channels, in_height, in_width]`.
        f:           FIR filter `[filter_height, filter_width]`, `[filter_taps]` or `None`.
        padding:     Padding with respect to the output: int, `[x, y]` or
                     `[x_before, x_after, y_before, y_after]` (default: 0).
        flip_filter: False = convolution, True = correlation (default: False).
        gain:        Overall scaling of the signal magnitude (default: 1).
        impl:        'auto', 'ref' or 'cuda'.

    Returns:
        Tensor `[batch_size, num_channels, out_height, out_width]`. Gradient orders as
        `upfirdn2d()`.
    """
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl='auto'):
    r"""Upsample a batch of 2D images with a FIR filter (output size `up` times the input).

    Args:
        x:           Input tensor `[batch_size, num_channels, in_height, in_width]`.
        f:           FIR filter `[filter_height, filter_width]`, `[filter_taps]` or `None`.
        up:          Integer upsampling factor, int or `[x, y]` (default: 2).
        padding:     Padding with respect to the output: int, `[x, y]` or
                     `[x_before, x_after, y_before, y_after]` (default: 0).
        flip_filter: False = convolution, True = correlation (default: False).
        gain:        Overall scaling of the signal magnitude (default: 1); the `up_x * up_y`
                     compensation for the inserted zeros is added automatically.
        impl:        'auto', 'ref' or 'cuda'.

    Returns:
        Tensor `[batch_size, num_channels, out_height, out_width]`. Gradient orders as
        `upfirdn2d()`.
    """
    upx, upy = _parse_scaling(up, 'up')
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + (fw + upx - 1) // 2,
        padx1 + (fw - upx) // 2,
        pady0 + (fh + upy - 1) // 2,
        pady1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl='auto'):
    r"""Downsample a batch of 2D images with a FIR filter (output size input / `down`).

    Args:
        x:           Input tensor `[batch_size, num_channels, in_height, in_width]`.
        f:           FIR filter `[filter_height, filter_width]`, `[filter_taps]` or `None`.
        down:        Integer downsampling factor, int or `[x, y]` (default: 2).
        padding:     Padding with respect to the input: int, `[x, y]` or
                     `[x_before, x_after, y_before, y_after]` (default: 0).
        flip_filter: False = convolution, True = correlation (default: False).
        gain:        Overall scaling of the signal magnitude (default: 1).
        impl:        'auto', 'ref' or 'cuda'.

    Returns:
        Tensor `[batch_size, num_channels, out_height, out_width]`. Gradient orders as
        `upfirdn2d()`.
    """
    downx, downy = _parse_scaling(down, 'down')
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + (fw - downx + 1) // 2,
        padx1 + (fw - downx) // 2,
        pady0 + (fh - downy + 1) // 2,
        pady1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
