"""Filtered leaky ReLU: the alias-free nonlinearity of StyleGAN3 (bias, upsample, lrelu, downsample).

Semantics and signature follow NVlabs `torch_utils/ops/filtered_lrelu.py`. The reference composes
the `bias_act` and `upfirdn2d` references and defines the op; the CUDA kernel (ops/csrc/
filtered_lrelu*, wrapped by `_cuda_filtered_lrelu`) fuses the chain so that the upsampled
intermediate never reaches global memory.

Gradients: the reference path supports every order (standard PyTorch ops). The CUDA path supports
every order too: the op is piecewise linear, so its gradient is the same fused pass with the
activation replaced by the derivative recorded in the forward pass (one byte per intermediate
pixel), and the gradient of that pass is the pass with the forward geometry again. Derivatives
with respect to x through the recorded derivative are zero almost everywhere, as for the
reference's leaky ReLU. StyleGAN3 training differentiates the op once (R1 differentiates D only).
"""

import math

import numpy as np
import torch

from torch_utils import misc
from . import _impl
from . import bias_act as _bias_act
from . import upfirdn2d as _upfirdn2d

# Without autograd the reference processes this many bytes of the upsampled intermediate per
# step (a few planes at a time), so that it stays in the CPU's cache instead of memory.
REF_CHUNK_BYTES = 2 << 20
# Input samples per block of a banded pass (see `_band_pass`).
BAND_STEP = 8

#----------------------------------------------------------------------------

def filtered_lrelu(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=np.sqrt(2), slope=0.2, clamp=None,
                   flip_filter=False, impl='auto'):
    r"""Bias, upsample, FIR filter, leaky ReLU, clamp, FIR filter and downsample, in that order.

    1. Add the bias `b` to every channel.
    2. Upsample by inserting `up - 1` zeros after each pixel.
    3. Pad by `padding` (negative values crop).
    4. Convolve with `fu` (gain `up ** 2`), keeping the pixels whose footprint lies inside.
    5. Leaky ReLU with `slope`, times `gain`, clamped to `[-clamp, +clamp]`.
    6. Convolve with `fd` and keep every `down`-th pixel.

    Args:
        x:           Input tensor `[batch_size, num_channels, in_height, in_width]`.
        fu:          Upsampling FIR filter: `[taps]` (separable), `[h, w]` (non-separable) or None.
        fd:          Downsampling FIR filter, same forms as `fu`.
        b:           Bias vector `[num_channels]`, or None.
        up:          Integer upsampling factor (default 1).
        down:        Integer downsampling factor (default 1).
        padding:     Padding of the upsampled image: int, `[x, y]` or `[x0, x1, y0, y1]`.
        gain:        Gain after the leaky ReLU (default sqrt(2)).
        slope:       Slope of the negative half of the leaky ReLU (default 0.2).
        clamp:       Clamp after the gain, or None.
        flip_filter: False = convolution, True = correlation.
        impl:        'auto', 'ref' or 'cuda' (see `ops._impl.resolve`).

    Returns:
        Tensor `[batch_size, num_channels, out_height, out_width]` with the dtype of `x`, where
        `out_width = (in_width * up + padx0 + padx1 - fu_width + 1 - fd_width) // down + 1`.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'x: expected a tensor, got {type(x).__name__}')
    misc.assert_rank(x, 4, name='x')
    for name, value in (('up', up), ('down', down)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f'filtered_lrelu: {name} must be a positive integer, got {value!r}')
    if b is not None and (not isinstance(b, torch.Tensor) or list(b.shape) != [x.shape[1]]):
        raise ValueError(f'filtered_lrelu: b must be a tensor of shape [{x.shape[1]}], '
                         f'got {list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__}')
    if clamp is not None and not clamp >= 0:
        raise ValueError(f'filtered_lrelu: clamp must be non-negative or None, got {clamp!r}')
    up, down = int(up), int(down)
    padx0, padx1, pady0, pady1 = _upfirdn2d._parse_padding(padding)
    fu_w, fu_h = _upfirdn2d._get_filter_size(fu)
    fd_w, fd_h = _upfirdn2d._get_filter_size(fd)
    with misc.suppress_tracer_warnings():
        in_h, in_w = int(x.shape[2]), int(x.shape[3])
    m_w, m_h = in_w * up + padx0 + padx1 - fu_w + 1, in_h * up + pady0 + pady1 - fu_h + 1
    if m_w < fd_w or m_h < fd_h:
        raise ValueError(f'filtered_lrelu: the upsampled, padded, filtered image ({m_h}x{m_w}) is smaller than fd ({fd_h}x{fd_w}); '
                         f'x has shape {list(x.shape)}, up={up}, padding=({padx0}, {padx1}, {pady0}, {pady1}), fu {fu_h}x{fu_w}')
    clamp = None if clamp is None else float(clamp)
    if _impl.resolve('filtered_lrelu', impl, x) == 'cuda':
        from . import _cuda_filtered_lrelu
        return _cuda_filtered_lrelu.filtered_lrelu(x, fu, fd, b, up, down, padx0, padx1, pady0, pady1, float(gain),
                                                   float(slope), clamp, bool(flip_filter))
    return _filtered_lrelu_ref(x, fu, fd, b, up, down, padx0, padx1, pady0, pady1, float(gain), float(slope), clamp,
                               bool(flip_filter))

#----------------------------------------------------------------------------
# Reference implementation.

def _filtered_lrelu_ref(x, fu, fd, b, up, down, padx0, padx1, pady0, pady1, gain, slope, clamp, flip_filter):
    """Pure-PyTorch filtered_lrelu on parsed arguments.

    With autograd recording (x or b requires grad), the plain composition. Otherwise the same
    operations a few planes at a time with the activation applied in place, so that the upsampled
    intermediate (up^2 times the input, the bulk of the work) stays in the cache and no full-size
    temporaries are allocated; on the CPU in float32/float64, separable filters are applied as
    banded matrix products (`_band_pass`), which run at matrix-multiply speed where depthwise
    convolutions do not. The results agree with the composition to rounding.
    """
    if torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad)):
        return _compose(x, fu, fd, b, up, down, padx0, padx1, pady0, pady1, gain, slope, clamp, flip_filter)
    batch_size, channels, in_h, in_w = x.shape
    fu = _ones_if_none(fu, x.device)
    fd = _ones_if_none(fd, x.device)
    fu_w, fu_h = _upfirdn2d._get_filter_size(fu)
    fd_w, fd_h = _upfirdn2d._get_filter_size(fd)
    m_w, m_h = in_w * up + padx0 + padx1 - fu_w + 1, in_h * up + pady0 + pady1 - fu_h + 1
    out_w, out_h = (m_w - fd_w) // down + 1, (m_h - fd_h) // down + 1
    banded = x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64)
    hu = _axis_taps(fu, float(up * up), flip_filter, x.dtype) if banded and fu.ndim == 1 else None
    hd = _axis_taps(fd, 1.0, flip_filter, x.dtype) if banded and fd.ndim == 1 else None
    chunk = max(1, REF_CHUNK_BYTES // max(m_h * m_w * x.element_size(), 1))
    y = torch.empty([batch_size, channels, out_h, out_w], dtype=x.dtype, device=x.device)
    for n in range(batch_size):
        for c0 in range(0, channels, chunk):
            c1 = min(c0 + chunk, channels)
            t = x[n:n + 1, c0:c1]
            if b is not None:
                t = t + b[c0:c1].to(t.dtype).reshape(1, -1, 1, 1)
            if hu is not None:
                t = _band_pass(_band_pass(t, hu, -1, up, 1, padx0, padx1), hu, -2, up, 1, pady0, pady1)
            else:
                t = _upfirdn2d._upfirdn2d_ref(t, fu, up, up, 1, 1, padx0, padx1, pady0, pady1, flip_filter, float(up ** 2))
            torch.nn.functional.leaky_relu_(t, slope)
            if gain != 1:
                t.mul_(gain)
            if clamp is not None:
                t.clamp_(-clamp, clamp)
            if hd is not None:
                t = _band_pass(_band_pass(t, hd, -1, 1, down, 0, 0), hd, -2, 1, down, 0, 0)
            else:
                t = _upfirdn2d._upfirdn2d_ref(t, fd, 1, 1, down, down, 0, 0, 0, 0, flip_filter, 1.0)
            y[n:n + 1, c0:c1] = t
    return y.contiguous(memory_format=_upfirdn2d._memory_format(x))


def _axis_taps(f, gain, flip_filter, dtype):
    """Per-axis taps of separable filter f as a true convolution (upfirdn2d's convention), gain split over the two axes."""
    h = f.to(dtype) * math.sqrt(gain)
    return h.flip(0) if flip_filter else h


def _band_pass(x, h, dim, up, down, pad0, pad1):
    """One axis (dim -1 or -2) of upfirdn2d with convolution taps h: out[o] = sum_t h[t] * u[o * down - pad0 + K - 1 - t],
    u being x zero-stuffed by `up` (zero outside x).

    The operator's matrix is banded and periodic: every block of B outputs reads a window of `win`
    consecutive inputs, `step` further along for the next block, through the same [B, win]
    matrix. So the pass is one matrix product over all windows (overlapping by win - step).
    """
    taps = h.shape[0]
    n_in = x.shape[dim]
    n_out = (n_in * up + pad0 + pad1 - taps) // down + 1
    period = up // math.gcd(up, down)  # B * down must be a multiple of up
    block = max(period, (BAND_STEP * up // down) // period * period)
    step = block * down // up
    first = -(pad0 // up)  # first input sample under output 0: ceil(-pad0 / up)
    win = ((block - 1) * down - pad0 + taps - 1) // up - first + 1
    blocks = -(-n_out // block)
    r = torch.arange(block, device=x.device)[:, None]
    c = torch.arange(win, device=x.device)[None, :]
    t = r * down - pad0 + taps - 1 - (first + c) * up
    m = torch.where((t >= 0) & (t < taps), h[t.clamp(0, taps - 1)], torch.zeros([], dtype=h.dtype, device=h.device))
    lo, hi = first, first + (blocks - 1) * step + win
    if dim == -1:
        xw = _upfirdn2d._pad_window(x, lo, hi, 0, x.shape[-2]).unfold(-1, win, step).contiguous()  # [..., H, blocks, win]
        y = torch.mm(xw.reshape(-1, win), m.t()).reshape(*xw.shape[:-2], blocks * block)
        return y[..., :n_out]
    xw = _upfirdn2d._pad_window(x, 0, x.shape[-1], lo, hi).unfold(-2, win, step).transpose(-1, -2).contiguous()  # [..., blocks, win, W]
    y = torch.matmul(m, xw)  # [..., blocks, B, W]
    return y.reshape(*xw.shape[:-3], blocks * block, xw.shape[-1])[..., :n_out, :]


def _ones_if_none(f, device):
    if f is None:
        return torch.ones([1, 1], dtype=torch.float32, device=device)
    return f


def _compose(x, fu, fd, b, up, down, padx0, padx1, pady0, pady1, gain, slope, clamp, flip_filter):
    """The definition: bias_act and upfirdn2d references in sequence."""
    x = _bias_act._bias_act_ref(x, b, 1, 'linear', 0.0, 1.0, None)
    x = _upfirdn2d._upfirdn2d_ref(x, _ones_if_none(fu, x.device), up, up, 1, 1, padx0, padx1, pady0, pady1, flip_filter, float(up ** 2))
    x = _bias_act._bias_act_ref(x, None, 1, 'lrelu', slope, gain, clamp)
    return _upfirdn2d._upfirdn2d_ref(x, _ones_if_none(fd, x.device), 1, 1, down, down, 0, 0, 0, 0, flip_filter, 1.0)

#----------------------------------------------------------------------------
