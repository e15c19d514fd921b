"""Independent numpy/float64 references for the ops tests, written from the op definitions
(not from the PyTorch implementations they check)."""

import numpy as np

#----------------------------------------------------------------------------
# bias_act

SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


def act_np(x, act, alpha):
    """The activation functions by formula."""
    if act == 'linear':
        return x
    if act == 'relu':
        return np.maximum(x, 0)
    if act == 'lrelu':
        return np.where(x >= 0, x, alpha * x)
    if act == 'tanh':
        return np.tanh(x)
    if act == 'sigmoid':
        return 1 / (1 + np.exp(-x))
    if act == 'elu':
        return np.where(x > 0, x, np.expm1(x))
    if act == 'selu':
        return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x))
    if act == 'softplus':
        return np.logaddexp(0, x)
    if act == 'swish':
        return x / (1 + np.exp(-x))
    raise KeyError(act)


def bias_act_np(x, b, dim, act, alpha, gain, clamp):
    x = np.asarray(x, dtype=np.float64)
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + np.asarray(b, dtype=np.float64).reshape(shape)
    y = act_np(x, act, alpha) * gain
    if clamp is not None:
        y = np.clip(y, -clamp, clamp)
    return y

#----------------------------------------------------------------------------
# upfirdn2d by its definition.

def _parse(v, n):
    if isinstance(v, int):
        return [v] * n if n == 2 else [v, v, v, v]
    v = list(v)
    if n == 4 and len(v) == 2:
        return [v[0], v[0], v[1], v[1]]
    return v


def upfirdn2d_np(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Direct evaluation of upfirdn2d: out[oy, ox] = sum over taps of f * (zero-stuffed, padded x).

    Loops over the filter taps; for every output pixel, tap (ky, kx) of the convolution reads
    position (oy*down + ky, ox*down + kx) of the padded upsampled image, which maps back to
    input pixel ((py - pady0) / up) when that is an integer inside the image, and is 0 otherwise.
    """
    x = np.asarray(x, dtype=np.float64)
    upx, upy = _parse(up, 2)
    downx, downy = _parse(down, 2)
    padx0, padx1, pady0, pady1 = _parse(padding, 4)
    f = np.ones([1, 1]) if f is None else np.asarray(f, dtype=np.float64)
    f = np.outer(f, f) if f.ndim == 1 else f  # separable: x and y passes, gain**0.5 each
    g = (f if flip_filter else f[::-1, ::-1]) * gain  # correlation kernel
    fh, fw = g.shape
    n, c, h, w = x.shape
    out_h = (h * upy + pady0 + pady1 - fh) // downy + 1
    out_w = (w * upx + padx0 + padx1 - fw) // downx + 1
    out = np.zeros([n, c, out_h, out_w])
    oy = np.arange(out_h)[:, None]
    ox = np.arange(out_w)[None, :]
    for ky in range(fh):
        for kx in range(fw):
            uy = oy * downy + ky - pady0  # position in the upsampled image
            ux = ox * downx + kx - padx0
            valid = (uy >= 0) & (uy < h * upy) & (uy % upy == 0) & (ux >= 0) & (ux < w * upx) & (ux % upx == 0)
            iy = np.clip(uy // upy, 0, h - 1)
            ix = np.clip(ux // upx, 0, w - 1)
            out += g[ky, kx] * np.where(valid, x[:, :, iy, ix], 0)
    return out

#----------------------------------------------------------------------------
# Convolution and conv2d_resample as the explicit composition.

def conv2d_np(x, w, groups=1):
    """Valid 2D correlation (like F.conv2d, no padding) by looping over kernel taps."""
    n, c, h, wd = x.shape
    o, ipg, kh, kw = w.shape
    opg = o // groups
    out = np.zeros([n, o, h - kh + 1, wd - kw + 1])
    for g in range(groups):
        xs = x[:, g * ipg:(g + 1) * ipg]
        ws = w[g * opg:(g + 1) * opg]
        for ky in range(kh):
            for kx in range(kw):
                patch = xs[:, :, ky:ky + h - kh + 1, kx:kx + wd - kw + 1]
                out[:, g * opg:(g + 1) * opg] += np.einsum('nihw,oi->nohw', patch, ws[:, :, ky, kx])
    return out


def filter_size(f):
    if f is None:
        return 1, 1
    f = np.asarray(f)
    return f.shape[-1], f.shape[0]


def conv2d_resample_np(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    """Zero-insert upsample + pad + filter (gain up**2), valid conv, filter + downsample."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = _parse(padding, 4)
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
    x = upfirdn2d_np(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)
    x = conv2d_np(x, w if flip_weight else w[:, :, ::-1, ::-1], groups=groups)
    if down > 1:
        x = upfirdn2d_np(x, f, down=down, flip_filter=flip_filter)
    return x


def modulated_conv2d_np(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                        demodulate=True, flip_weight=True):
    """Per-sample loop: modulate (and demodulate) the weight for each sample, then convolve."""
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    styles = np.asarray(styles, dtype=np.float64)
    outs = []
    for n in range(x.shape[0]):
        w = weight * styles[n][None, :, None, None]
        if demodulate:
            w = w / np.sqrt((w ** 2).sum(axis=(1, 2, 3)) + 1e-8)[:, None, None, None]
        outs.append(conv2d_resample_np(x[n:n + 1], w, f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight))
    out = np.concatenate(outs, axis=0)
    if noise is not None:
        out = out + np.asarray(noise, dtype=np.float64)
    return out
