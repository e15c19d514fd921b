"""Autograd wrapper of the fused filtered leaky ReLU CUDA kernel (ops/csrc/filtered_lrelu.*).

The kernel computes stage 1 (upsample + filter), a middle step and stage 2 (filter + downsample)
in one pass; the middle step is either the activation (forward, recording per intermediate pixel
whether it was positive, negative or clamped: one byte) or a multiplication by the recorded
derivative. The gradient is therefore the same pass with the adjoint geometry (up and down
swapped, filters reversed, paddings mirrored) and the recorded derivative, and the gradient of
that linear pass is the pass with the original geometry: gradients of every order come from the
one kernel. Derivatives through the recorded derivative are zero almost everywhere (leaky ReLU
and clamp are piecewise linear), as in the reference. The filters are constants (no gradient),
as in NVlabs.
"""

import functools

import torch

from . import _build
from . import upfirdn2d as _upfirdn2d


def filtered_lrelu(x, fu, fd, b, up, down, padx0, padx1, pady0, pady1, gain, slope, clamp, flip_filter):
    """filtered_lrelu via the CUDA kernel on parsed arguments (see ops.filtered_lrelu for the meaning).

    Args:
        x:    [N, C, H, W] CUDA tensor, float32, float16, bfloat16 or float64, any layout.
        fu, fd: filters ([taps], [h, w] or None), any float dtype and device.
        b:    [C] bias or None.
        clamp: float or None.

    Returns:
        [N, C, out_h, out_w] in x's dtype and memory format.
    """
    f1, f2, geom = setup(int(x.shape[2]), int(x.shape[3]), fu, fd, up, down, padx0, padx1, pady0, pady1, flip_filter, x.dtype, x.device)
    if b is not None:
        b = b.to(x.dtype)
    y = _forward_function(geom, float(gain), float(slope), -1.0 if clamp is None else float(clamp)).apply(x, b, f1, f2)
    return y.contiguous(memory_format=_upfirdn2d._memory_format(x))


def setup(in_h, in_w, fu, fd, up, down, padx0, padx1, pady0, pady1, flip_filter, dtype, device):
    """(f1, f2, geom): the kernel's filter taps and the forward geometry
    (up, pad1_x, pad1_y, down, pad2_x, pad2_y, m_h, m_w, out_h, out_w, in_h, in_w)."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    f1 = _taps(fu, float(up * up), flip_filter, acc, device)
    f2 = _taps(fd, 1.0, flip_filter, acc, device)
    k1h, k1w = _size(f1)
    k2h, k2w = _size(f2)
    m_h, m_w = in_h * up + pady0 + pady1 - k1h + 1, in_w * up + padx0 + padx1 - k1w + 1
    out_h, out_w = (m_h - k2h) // down + 1, (m_w - k2w) // down + 1
    return f1, f2, (up, padx0, pady0, down, 0, 0, m_h, m_w, out_h, out_w, in_h, in_w)


def _taps(f, gain, flip_filter, dtype, device):
    """Filter taps as the kernel applies them (correlation, gain folded in): 1-D for separable filters."""
    if f is None:
        return torch.full([1], gain ** 0.5, dtype=dtype, device=device)
    f = f.to(device=device, dtype=dtype)
    f = f * (gain ** (f.ndim / 2))
    if not flip_filter:  # convolution: the kernel correlates
        f = f.flip(list(range(f.ndim)))
    return f.contiguous()


def _size(f):
    return (int(f.shape[0]), int(f.shape[1])) if f.ndim == 2 else (int(f.shape[0]), int(f.shape[0]))


def _reverse(f):
    return f.flip(list(range(f.ndim))).contiguous()


def adjoint_geometry(geom, k1, k2):
    """Geometry of the adjoint pass. geom = (up, pad1_x, pad1_y, down, pad2_x, pad2_y, m_h, m_w, out_h, out_w, in_h, in_w);
    k1, k2 = (h, w) sizes of the stage-1 and stage-2 filters of `geom` (the adjoint uses them reversed and swapped)."""
    up, p1x, p1y, down, p2x, p2y, m_h, m_w, out_h, out_w, in_h, in_w = geom
    return (down, k2[1] - 1 - p2x, k2[0] - 1 - p2y, up, k1[1] - 1 - p1x, k1[0] - 1 - p1y, m_h, m_w, in_h, in_w, out_h, out_w)


def _run(x, f1, f2, b, si, geom, mode, gain, slope, clamp, write_classes):
    up, p1x, p1y, down, p2x, p2y, m_h, m_w, out_h, out_w, _in_h, _in_w = geom
    return _build.load_op('filtered_lrelu').filtered_lrelu(x, f1, f2, b, si, up, p1x, p1y, m_h, m_w, down, p2x, p2y, out_h, out_w,
                                                           mode, gain, slope, clamp, write_classes)


@functools.lru_cache(maxsize=None)
def _linear_function(geom, gain, slope):
    """The pass with the recorded derivative in the middle (linear in its input) for one geometry."""

    class FilteredLreluLinear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, g, classes, f1, f2):
            ctx.save_for_backward(classes, f1, f2)
            y, _ = _run(g, f1, f2, None, classes, geom, 1, gain, slope, -1.0, False)
            return y

        @staticmethod
        def backward(ctx, dy):
            classes, f1, f2 = ctx.saved_tensors
            dg = None
            if ctx.needs_input_grad[0]:
                adj = adjoint_geometry(geom, _size(f1), _size(f2))
                dg = _linear_function(adj, gain, slope).apply(dy, classes, _reverse(f2), _reverse(f1))
            return dg, None, None, None

    return FilteredLreluLinear


@functools.lru_cache(maxsize=None)
def _forward_function(geom, gain, slope, clamp):
    """autograd.Function of the forward pass for one setting of the static arguments (cached)."""

    class FilteredLrelu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, b, f1, f2):
            need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
            y, classes = _run(x, f1, f2, b, None, geom, 0, gain, slope, clamp, need_grad)
            ctx.save_for_backward(classes if need_grad else None, f1, f2)
            return y

        @staticmethod
        def backward(ctx, dy):
            classes, f1, f2 = ctx.saved_tensors
            adj = adjoint_geometry(geom, _size(f1), _size(f2))
            dx = _linear_function(adj, gain, slope).apply(dy, classes, _reverse(f2), _reverse(f1))
            db = dx.sum([0, 2, 3]) if ctx.needs_input_grad[1] else None
            return (dx if ctx.needs_input_grad[0] else None), db, None, None

    return FilteredLrelu
