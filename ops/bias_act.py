"""Fused bias + activation + gain + clamp (the elementwise tail of every StyleGAN2 layer).

Semantics, defaults and the activation table follow NVlabs `torch_utils/ops/bias_act.py`; the
`cuda_idx` numbering is the one the CUDA kernel (`ops/csrc/bias_act*`) switches on.
"""

import numpy as np
import torch
import torch.nn.functional as F

import dnnlib
from torch_utils import misc
from . import _impl

#----------------------------------------------------------------------------
# Activation table. func: the activation; def_alpha/def_gain: defaults for `alpha` and `gain`;
# cuda_idx: kernel switch value; ref: what the CUDA backward reads ('x' input, 'y' output);
# has_2nd_grad: whether the second derivative is non-zero.

activation_funcs = {
    'linear':   dnnlib.EasyDict(func=lambda x, **_:        x,                          def_alpha=0,   def_gain=1,          cuda_idx=1, ref='',  has_2nd_grad=False),
    'relu':     dnnlib.EasyDict(func=lambda x, **_:        F.relu(x),                  def_alpha=0,   def_gain=np.sqrt(2), cuda_idx=2, ref='y', has_2nd_grad=False),
    'lrelu':    dnnlib.EasyDict(func=lambda x, alpha, **_: F.leaky_relu(x, alpha),     def_alpha=0.2, def_gain=np.sqrt(2), cuda_idx=3, ref='y', has_2nd_grad=False),
    'tanh':     dnnlib.EasyDict(func=lambda x, **_:        torch.tanh(x),              def_alpha=0,   def_gain=1,          cuda_idx=4, ref='y', has_2nd_grad=True),
    'sigmoid':  dnnlib.EasyDict(func=lambda x, **_:        torch.sigmoid(x),           def_alpha=0,   def_gain=1,          cuda_idx=5, ref='y', has_2nd_grad=True),
    'elu':      dnnlib.EasyDict(func=lambda x, **_:        F.elu(x),                   def_alpha=0,   def_gain=1,          cuda_idx=6, ref='y', has_2nd_grad=True),
    'selu':     dnnlib.EasyDict(func=lambda x, **_:        F.selu(x),                  def_alpha=0,   def_gain=1,          cuda_idx=7, ref='y', has_2nd_grad=True),
    'softplus': dnnlib.EasyDict(func=lambda x, **_:        F.softplus(x),              def_alpha=0,   def_gain=1,          cuda_idx=8, ref='y', has_2nd_grad=True),
    'swish':    dnnlib.EasyDict(func=lambda x, **_:        torch.sigmoid(x) * x,       def_alpha=0,   def_gain=np.sqrt(2), cuda_idx=9, ref='x', has_2nd_grad=True),
}

#----------------------------------------------------------------------------

def bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl='auto'):
    r"""Add a bias, apply an activation, scale by a gain and clamp, in that order.

    `y = clamp(act(x + b, alpha) * gain, -clamp, +clamp)`, every step optional. Supports first
    and second-order gradients on both paths (the reference supports any order); relu, lrelu,
    linear and the clamp have a zero second derivative.

    Args:
        x:      Input tensor of any shape; fp64 (reference only), fp32, fp16 or bf16.
        b:      Bias vector of shape `[x.shape[dim]]`, or None. Cast to `x.dtype`.
        dim:    The dimension of `x` that `b` runs along (negative values count from the end;
                ignored when `b` is None).
        act:    Activation name: one of `activation_funcs` ('linear', 'relu', 'lrelu', 'tanh',
                'sigmoid', 'elu', 'selu', 'softplus', 'swish').
        alpha:  Shape parameter of the activation (only lrelu uses it), or None for the
                default (0.2 for lrelu).
        gain:   Output scale, or None for the activation's default (sqrt(2) for relu, lrelu
                and swish, 1 otherwise).
        clamp:  Clamp the output to `[-clamp, +clamp]` after the gain, or None to disable.
        impl:   'auto', 'ref' or 'cuda' (see `ops._impl.resolve`).

    Returns:
        Tensor of the same shape, dtype and memory format as `x`.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'x: expected a tensor, got {type(x).__name__}')
    if act not in activation_funcs:
        raise ValueError(f'act: unknown activation {act!r}; valid: {", ".join(activation_funcs)}')
    if clamp is not None and not clamp >= 0:
        raise ValueError(f'clamp: expected None or a value >= 0, got {clamp!r}')
    if not isinstance(dim, (int, np.integer)):
        raise ValueError(f'dim: expected an int, got {dim!r}')
    dim = int(dim)
    if b is not None:
        if not isinstance(b, torch.Tensor) or b.ndim != 1:
            got = f'{b.ndim}-D tensor of shape {list(b.shape)}' if isinstance(b, torch.Tensor) else type(b).__name__
            raise ValueError(f'b: expected a 1-D bias tensor, got {got}')
        if not -x.ndim <= dim < x.ndim:
            raise ValueError(f'dim: {dim} is out of range for x of shape {list(x.shape)}')
        dim %= x.ndim
        with misc.suppress_tracer_warnings():
            if int(b.shape[0]) != int(x.shape[dim]):
                raise ValueError(f'b: expected length x.shape[{dim}] = {int(x.shape[dim])} (x has shape {list(x.shape)}), got {int(b.shape[0])}')
    elif x.ndim > 0 and -x.ndim <= dim < x.ndim:
        dim %= x.ndim
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp) if clamp is not None else None

    if _impl.resolve('bias_act', impl, x) == 'cuda':
        from . import _cuda_bias_act
        return _cuda_bias_act.bias_act(x, b, dim, act, alpha, gain, clamp)
    return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)

#----------------------------------------------------------------------------

def _bias_act_ref(x, b, dim, act, alpha, gain, clamp):
    """Pure-PyTorch bias_act on resolved arguments (floats; clamp None = off)."""
    if b is not None:
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = activation_funcs[act].func(x, alpha=alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
