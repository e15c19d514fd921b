"""Autograd wrapper of the fused bias + activation CUDA kernel (ops/csrc/bias_act.*).

Gradients: first and second order (R1 and path-length regularization differentiate through the
first derivative); the second derivative itself is not differentiable again. Like NVlabs, the
backward pass reads the output y instead of the input for every activation but swish, so the
input of bias_act (typically a convolution output) is freed after the forward pass.
"""

import functools

import torch

from . import _build

# Activation name -> kernel index (NVlabs `cuda_idx`), whether act'' can be nonzero, and which
# tensor the derivatives are computed from (NVlabs `ref`): 'y' the output, so the input can be
# freed after the forward pass, or 'x' the input.
ACT_INDEX = {'linear': 1, 'relu': 2, 'lrelu': 3, 'tanh': 4, 'sigmoid': 5, 'elu': 6, 'selu': 7, 'softplus': 8, 'swish': 9}
HAS_2ND_GRAD = {'linear': False, 'relu': False, 'lrelu': False, 'tanh': True, 'sigmoid': True, 'elu': True, 'selu': True,
                'softplus': True, 'swish': True}
REF = {'linear': 'y', 'relu': 'y', 'lrelu': 'y', 'tanh': 'y', 'sigmoid': 'y', 'elu': 'y', 'selu': 'y', 'softplus': 'y', 'swish': 'x'}


def bias_act(x, b, dim, act, alpha, gain, clamp):
    """bias_act via the CUDA kernel; arguments already resolved (floats, clamp None = off, 0 <= dim < x.ndim).

    Args:
        x:     Input tensor on a CUDA device (float32, float16, bfloat16 or float64), any layout.
        b:     Bias [x.shape[dim]] or None; cast to x.dtype.
        dim:   The channel dim of x that b runs along.
        act:   Activation name (a key of ACT_INDEX).
        alpha: lrelu slope (ignored by the other activations).
        gain:  Scale applied after the activation.
        clamp: Output clamp (>= 0) or None.

    Returns:
        clamp(act(x + b) * gain), same shape, dtype and memory format as x.
    """
    if act not in ACT_INDEX:
        raise ValueError(f'act: unknown activation {act!r}; valid: {", ".join(ACT_INDEX)}')
    if b is not None:
        b = b.to(x.dtype)
    dim = int(dim) % max(x.ndim, 1)
    fn = _bias_act_function(dim, act, float(alpha), float(gain), -1.0 if clamp is None else float(clamp))
    return fn.apply(x, b)


def _channel_sum(t, dim):
    return t.sum([i for i in range(t.ndim) if i != dim])


@functools.lru_cache(maxsize=None)
def _bias_act_function(dim, act, alpha, gain, clamp):
    """autograd.Function classes for one setting of the static arguments (cached)."""
    act_idx = ACT_INDEX[act]
    ref = REF[act] if (act != 'linear' or clamp >= 0) else ''  # linear without clamp: constant derivative

    def kernel(r, b, dy, gg, mode, ref_y):
        return _build.load_op('bias_act').bias_act(r, b, dy, gg, dim, act_idx, mode, ref_y, alpha, gain, clamp)

    def derivative(dy, gg, x, b, y, mode):
        """Kernel mode 1 (dy * d act) or 2 (second derivative w.r.t. the reference) from this activation's reference."""
        if ref == 'x':
            return kernel(x, b, dy, gg, mode, False)
        return kernel(y if ref == 'y' else dy, None, dy, gg, mode, True)

    class BiasActGrad(torch.autograd.Function):
        """dx = dy * gain * act'(x + b) (zero where clamped), differentiable once more."""

        @staticmethod
        def forward(ctx, dy, x, b, y):
            dtype = (x if ref == 'x' else y if ref == 'y' else dy).dtype
            dy = dy.to(dtype)
            ctx.save_for_backward(dy, x, b, y)
            return derivative(dy, None, x, b, y, 1)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, gg):
            dy, x, b, y = ctx.saved_tensors
            gg = gg.to(dy.dtype)
            d_dy = d_x = d_b = d_y = None
            if ctx.needs_input_grad[0]:
                d_dy = derivative(gg, None, x, b, y, 1)
            if HAS_2ND_GRAD[act] and ref == 'x' and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
                d_x = derivative(dy, gg, x, b, y, 2)
                if ctx.needs_input_grad[2]:
                    d_b = _channel_sum(d_x, dim)
            if HAS_2ND_GRAD[act] and ref == 'y' and ctx.needs_input_grad[3]:
                d_y = derivative(dy, gg, x, b, y, 2)
            return d_dy, d_x, d_b, d_y

    class BiasAct(torch.autograd.Function):
        """y = clamp(act(x + b) * gain)."""

        @staticmethod
        def forward(ctx, x, b):
            y = kernel(x, b, None, None, 0, False)
            ctx.save_for_backward(x if ref == 'x' else None, b if ref == 'x' else None, y if ref == 'y' else None)
            return y

        @staticmethod
        def backward(ctx, dy):
            x, b, y = ctx.saved_tensors
            dx = db = None
            if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
                dx = BiasActGrad.apply(dy, x, b, y)
            if ctx.needs_input_grad[1]:
                db = _channel_sum(dx, dim)
            return dx, db

    return BiasAct
