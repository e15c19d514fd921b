"""2D convolution with optional FIR up/downsampling (NVlabs `conv2d_resample` semantics).

The result is always that of the generic composition: zero-insert upsample + pad + filter (gain
up**2), valid convolution, then filter + downsample. Cheaper equivalent schedules are picked per
case: 1x1 kernels resample the thinner side, downsampling uses a strided convolution, and
upsampling uses a strided transposed convolution followed by the filter.
"""

import torch
import torch.nn.functional as F

from torch_utils import misc
from . import upfirdn2d
from .upfirdn2d import _get_filter_size, _is_int, _parse_padding

#----------------------------------------------------------------------------

def _get_weight_shape(w):
    with misc.suppress_tracer_warnings():  # treated as constants
        return [int(sz) for sz in w.shape]


def _conv2d_wrapper(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """conv2d / conv_transpose2d; flip_weight=False flips the kernel (true convolution)."""
    _out_channels, _in_channels_per_group, kh, kw = _get_weight_shape(w)
    if not flip_weight and (kw > 1 or kh > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)

#----------------------------------------------------------------------------

def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False, impl='auto'):
    r"""2D convolution with optional up/downsampling; padding happens once, at the start.

    Equivalent to `upfirdn2d(x, f, up, padding=p, gain=up**2)` (with f only when up > 1), a
    valid convolution with `w`, then `upfirdn2d(., f, down)`, where `p` adds to `padding` the
    NVlabs filter-size adjustments for up/downsampling. Differentiable to any order on the
    reference path (first and second order with the CUDA upfirdn2d).

    Args:
        x:           Input tensor `[batch_size, in_channels, in_height, in_width]`.
        w:           Weight tensor `[out_channels, in_channels // groups, kernel_height,
                     kernel_width]`, same dtype as `x`.
        f:           Low-pass filter for resampling, prepared with `upfirdn2d.setup_filter()`,
                     or None (identity).
        up:          Integer upsampling factor (default: 1).
        down:        Integer downsampling factor (default: 1).
        padding:     Padding with respect to the upsampled image: int, `[x, y]` or
                     `[x_before, x_after, y_before, y_after]` (default: 0).
        groups:      Number of channel groups (default: 1).
        flip_weight: False = convolution, True = correlation like `F.conv2d` (default: True).
        flip_filter: False = convolution, True = correlation (default: False).
        impl:        Implementation of the inner upfirdn2d calls: 'auto', 'ref' or 'cuda'.

    Returns:
        Tensor `[batch_size, out_channels, out_height, out_width]`.
    """
    # Validate arguments.
    if not isinstance(x, torch.Tensor) or not isinstance(w, torch.Tensor):
        raise TypeError('conv2d_resample: x and w must be tensors')
    misc.assert_rank(x, 4, name='x')
    misc.assert_rank(w, 4, name='w')
    if w.dtype != x.dtype:
        raise ValueError(f'w: dtype {w.dtype} differs from x dtype {x.dtype}; cast the weight with w.to(x.dtype)')
    if not _is_int(up) or up < 1:
        raise ValueError(f'up: expected an int >= 1, got {up!r}')
    if not _is_int(down) or down < 1:
        raise ValueError(f'down: expected an int >= 1, got {down!r}')
    if not _is_int(groups) or groups < 1:
        raise ValueError(f'groups: expected an int >= 1, got {groups!r}')
    up, down, groups = int(up), int(down), int(groups)
    out_channels, in_channels_per_group, kh, kw = _get_weight_shape(w)
    with misc.suppress_tracer_warnings():
        in_channels = int(x.shape[1])
    if in_channels != in_channels_per_group * groups or out_channels % groups != 0:
        raise ValueError(f'w: shape {list(w.shape)} does not fit x with {in_channels} channels and groups={groups} '
                         f'(expected [k*{groups}, {in_channels // groups if in_channels % groups == 0 else "?"}, kh, kw])')
    fw, fh = _get_filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)

    # Adjust padding to account for up/downsampling.
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    # 1x1 kernel, downsampling only: downsample first, then convolve the smaller image.
    if kw == 1 and kh == 1 and (down > 1 and up == 1):
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 kernel, upsampling only: convolve first, then upsample.
    if kw == 1 and kh == 1 and (up > 1 and down == 1):
        x = _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter, impl=impl)

    # Downsampling only: filter, then strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return _conv2d_wrapper(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling (and maybe downsampling): strided transposed convolution, then filter.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_channels_per_group, kh, kw)
            w = w.transpose(1, 2)
            w = w.reshape(groups * in_channels_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv2d_wrapper(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=(not flip_weight))
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2, flip_filter=flip_filter, impl=impl)
        if down > 1:
            x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
        return x

    # No resampling and symmetric non-negative padding: plain conv2d.
    if up == 1 and down == 1:
        if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
            return _conv2d_wrapper(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    # Generic composition (asymmetric or negative padding).
    x = upfirdn2d.upfirdn2d(x, (f if up > 1 else None), up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter, impl=impl)
    x = _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
    return x
