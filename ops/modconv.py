"""Modulated convolution of StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image
Quality of StyleGAN", Sec. 2.2, Eqs. 1-3), NVlabs `networks_stylegan2.modulated_conv2d` semantics.

Only the per-sample weight modulation/demodulation (`_modulate_ref`) has a CUDA counterpart; the
convolution itself goes through `conv2d_resample` (cuDNN / PyTorch).
"""

import numpy as np
import torch

from torch_utils import misc
from . import _impl
from . import conv2d_resample as _conv2d_resample

#----------------------------------------------------------------------------

def _prenormalize_fp16(weight, styles):
    """Scale weight and styles so fp16 activations cannot overflow (demodulation undoes it).

    weight is divided by sqrt(I*kh*kw) and by its max-abs per output channel, styles by their
    max-abs per sample; both are positive per-row factors, which demodulation cancels.
    """
    _out_channels, in_channels, kh, kw = weight.shape
    weight = weight * (1 / np.sqrt(in_channels * kh * kw) / torch.linalg.vector_norm(weight, float('inf'), dim=[1, 2, 3], keepdim=True))
    styles = styles / torch.linalg.vector_norm(styles, float('inf'), dim=1, keepdim=True)
    return weight, styles


def _modulate_ref(weight, styles, demodulate, fused):
    """Per-sample modulated weights and demodulation coefficients (Eqs. 1 and 3).

    Args:
        weight:     [O, I, kh, kw] convolution weight.
        styles:     [N, I] per-sample input-channel scales.
        demodulate: Compute dcoefs and (when fused) apply them to the weights.
        fused:      Return the per-sample weights (needed by the grouped convolution).

    Returns:
        (w, dcoefs): w is [N, O, I, kh, kw] = weight * styles (times dcoefs when demodulating)
        if `fused`, else None; dcoefs is [N, O] = rsqrt(sum_{I,kh,kw} (weight * styles)^2 + 1e-8)
        if `demodulate`, else None.
    """
    batch_size = styles.shape[0]
    w = None
    dcoefs = None
    if demodulate or fused:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # [NOIkk]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [NO]
    if demodulate and fused:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    if not fused:
        w = None
    return w, dcoefs

#----------------------------------------------------------------------------

def modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                     demodulate=True, flip_weight=True, fused_modconv=True, impl='auto'):
    r"""StyleGAN2 modulated (and demodulated) convolution with optional resampling and noise.

    out[n] = conv2d_resample(x[n], weight * styles[n] * dcoefs[n]) + noise, where dcoefs
    normalizes each output channel's modulated weight to unit L2 norm when `demodulate`.
    The fused path folds the batch into the groups of one grouped convolution; the non-fused
    path scales the activations by `styles` before and by `dcoefs` after a shared convolution
    (the demodulation and noise are one multiply-add). Both give the same result up to rounding.
    When `x` is fp16 and `demodulate`, weight and styles are first rescaled to avoid overflow
    (the demodulation cancels the rescaling). First and second-order gradients work (any order
    on the reference path).

    Args:
        x:               Input tensor `[batch_size, in_channels, in_height, in_width]`.
        weight:          Weight tensor `[out_channels, in_channels, kernel_height, kernel_width]`.
        styles:          Modulation coefficients `[batch_size, in_channels]`.
        noise:           Tensor broadcastable to the output (usually `[batch_size, 1, H, W]`),
                         added after the demodulation, or None.
        up:              Integer upsampling factor (default: 1).
        down:            Integer downsampling factor (default: 1).
        padding:         Padding with respect to the upsampled image (default: 0).
        resample_filter: Low-pass filter from `upfirdn2d.setup_filter()` used when resampling.
        demodulate:      Apply weight demodulation (default: True).
        flip_weight:     False = convolution, True = correlation like `F.conv2d` (default: True).
        fused_modconv:   Use the grouped-convolution path (default: True).
        impl:            'auto', 'ref' or 'cuda' for the modulation step and the resampling.

    Returns:
        Tensor `[batch_size, out_channels, out_height, out_width]` with the dtype and memory
        format of `x`.
    """
    if not all(isinstance(t, torch.Tensor) for t in (x, weight, styles)):
        raise TypeError('modulated_conv2d: x, weight and styles must be tensors')
    misc.assert_rank(weight, 4, name='weight')
    misc.assert_rank(x, 4, name='x')
    with misc.suppress_tracer_warnings():  # treated as constants
        batch_size = int(x.shape[0])
        out_channels, in_channels, kh, kw = [int(s) for s in weight.shape]
    misc.assert_shape(x, [batch_size, in_channels, None, None], name='x')  # [NIHW]
    misc.assert_shape(styles, [batch_size, in_channels], name='styles')  # [NI]

    # Pre-normalize inputs to avoid FP16 overflow.
    if x.dtype == torch.float16 and demodulate:
        weight, styles = _prenormalize_fp16(weight, styles)

    # Per-sample weights and demodulation coefficients.
    if _impl.resolve('modconv', impl, x) == 'cuda':
        from . import _cuda_modconv
        w, dcoefs = _cuda_modconv.modulate(weight, styles, demodulate, fused_modconv)
    else:
        w, dcoefs = _modulate_ref(weight, styles, demodulate, fused_modconv)

    # Non-fused: scale the activations before and after one shared convolution.
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = _conv2d_resample.conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                                             flip_weight=flip_weight, impl=impl)
        if demodulate and noise is not None:
            x = torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1))  # fused multiply-add
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        elif noise is not None:
            x = x.add_(noise.to(x.dtype))
        return x

    # Fused: one grouped convolution with the batch folded into the groups.
    channels_last = (x.stride(1) == 1 and in_channels > 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = _conv2d_resample.conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                                         groups=batch_size, flip_weight=flip_weight, impl=impl)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
