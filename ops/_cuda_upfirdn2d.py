"""Autograd wrapper of the upfirdn2d CUDA kernel (ops/csrc/upfirdn2d.*).

The gradient of upfirdn2d with respect to x is another upfirdn2d (up and down swapped, the filter
flipped, the padding adjusted), so gradients of every order come from the same kernel. The filter
is treated as a constant (no gradient), as in NVlabs.
"""

import functools

import torch

from . import _build


def upfirdn2d(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain):
    """upfirdn2d via the CUDA kernel on parsed arguments.

    Args:
        x:           [N, C, H, W] CUDA tensor (float32, float16, bfloat16 or float64), NCHW or channels_last.
        f:           float32 filter on x's device: [taps] (separable, used on both axes) or [fh, fw].
        upx, upy:    Upsampling factors (zero insertion).
        downx, downy: Downsampling factors (keep every down-th pixel).
        padx0, padx1, pady0, pady1: Padding of the upsampled image (negative crops).
        flip_filter: False: convolution (filter flipped), True: correlation.
        gain:        Overall scale of the filter.

    Returns:
        [N, C, (H * upy + pady0 + pady1 - fh) // downy + 1, (W * upx + padx0 + padx1 - fw) // downx + 1],
        in x's dtype and memory format.
    """
    fn = _upfirdn2d_function(int(upx), int(upy), int(downx), int(downy), int(padx0), int(padx1), int(pady0), int(pady1),
                             bool(flip_filter), float(gain))
    return fn.apply(x, f)


def _grad_padding(in_h, in_w, out_h, out_w, fh, fw, upx, upy, downx, downy, padx0, pady0):
    """Padding of the upfirdn2d that computes the gradient (the adjoint operator)."""
    return (fw - padx0 - 1, in_w * upx - out_w * downx + padx0 - upx + 1,
            fh - pady0 - 1, in_h * upy - out_h * downy + pady0 - upy + 1)


@functools.lru_cache(maxsize=None)
def _upfirdn2d_function(upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain):
    """autograd.Function for one setting of the static arguments (cached)."""

    class Upfirdn2d(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, f):
            y = _build.load_op('upfirdn2d').upfirdn2d(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain)
            ctx.save_for_backward(f)
            ctx.in_hw = (x.shape[2], x.shape[3])
            return y

        @staticmethod
        def backward(ctx, dy):
            (f,) = ctx.saved_tensors
            dx = None
            if ctx.needs_input_grad[0]:
                fw = f.shape[-1]
                fh = f.shape[0] if f.ndim == 2 else fw
                p = _grad_padding(ctx.in_hw[0], ctx.in_hw[1], dy.shape[2], dy.shape[3], fh, fw, upx, upy, downx, downy, padx0, pady0)
                dx = _upfirdn2d_function(downx, downy, upx, upy, *p, not flip_filter, gain).apply(dy, f)
            return dx, None

    return Upfirdn2d
