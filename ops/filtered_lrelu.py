"""Filtered leaky ReLU: the alias-free nonlinearity of StyleGAN3 (bias, upsample, lrelu, downsample).

Semantics and signature follow NVlabs `torch_utils/ops/filtered_lrelu.py`. The reference composes
the `bias_act` and `upfirdn2d` references and defines the op; a CUDA kernel may only reproduce it.
"""

import numpy as np
import torch

from torch_utils import misc
from . import bias_act as _bias_act
from . import upfirdn2d as _upfirdn2d

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
        Tensor `[batch_size, num_channels, out_height, out_width]` with the dtype of `x`.
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
    return _filtered_lrelu_ref(x, fu=fu, fd=fd, b=b, up=int(up), down=int(down), padding=padding, gain=float(gain),
                               slope=float(slope), clamp=clamp, flip_filter=bool(flip_filter))

#----------------------------------------------------------------------------
# Reference implementation.

def _filtered_lrelu_ref(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    x = _bias_act.bias_act(x, b, impl='ref')
    x = _upfirdn2d.upfirdn2d(x, fu, up=up, padding=padding, gain=up ** 2, flip_filter=flip_filter, impl='ref')
    x = _bias_act.bias_act(x, act='lrelu', alpha=slope, gain=gain, clamp=clamp, impl='ref')
    x = _upfirdn2d.upfirdn2d(x, fd, down=down, flip_filter=flip_filter, impl='ref')
    return x

#----------------------------------------------------------------------------
