"""Autograd wrapper of the weight modulation/demodulation CUDA kernel (ops/csrc/modconv.*).

The kernel computes the per-sample weights and demodulation coefficients in one pass; the
backward is written in differentiable PyTorch ops (and recomputes the coefficients from weight
and styles), so gradients of any order work.
"""

import functools

import torch

from . import _build


def modulate(weight, styles, demodulate, fused):
    """Per-sample modulated weights and demodulation coefficients (StyleGAN2 Eqs. 1 and 3).

    Args:
        weight:     [O, I, kh, kw] CUDA tensor.
        styles:     [N, I] per-sample input-channel scales (cast to the common dtype with weight).
        demodulate: Compute dcoefs and, when fused, apply them to w.
        fused:      Return w (the grouped convolution needs it).

    Returns:
        (w, dcoefs): w [N, O, I, kh, kw] = weight * styles[:, None, :, None, None] (times
        dcoefs[:, :, None, None, None] when demodulating) if fused, else None; dcoefs [N, O] =
        rsqrt(sum over I, kh, kw of (weight * style)^2 + 1e-8) if demodulate, else None.
    """
    if weight.ndim != 4:
        raise ValueError(f'weight: expected shape [O, I, kh, kw], got {list(weight.shape)}')
    if styles.ndim != 2 or styles.shape[1] != weight.shape[1]:
        raise ValueError(f'styles: expected shape [N, {weight.shape[1]}], got {list(styles.shape)}')
    if not demodulate and not fused:
        return None, None
    dtype = torch.result_type(weight, styles)
    weight, styles = weight.to(dtype), styles.to(dtype)
    out = _modulate_function(bool(demodulate), bool(fused)).apply(weight, styles)
    if demodulate and fused:
        return out
    return (out, None) if fused else (None, out)


def _modulate_grads(weight, styles, gw, gd, demodulate):
    """Gradients of (w, dcoefs) with respect to weight and styles, in differentiable ops (gw, gd may be None)."""
    wsq = weight.square().sum([2, 3])  # [O, I]
    ssq = styles.square()  # [N, I]
    g_weight = g_styles = None
    coef = None  # [N, O] factor of v = weight * styles in the gradient of v
    if demodulate:
        d = (ssq @ wsq.t() + 1e-8).rsqrt()  # [N, O]
        gd_total = gd if gd is not None else torch.zeros_like(d)
        if gw is not None:  # dcoefs also reaches the loss through w = v * d
            gv_w = (gw * weight.unsqueeze(0)).sum([3, 4])  # [N, O, I]
            gd_total = gd_total + (gv_w * styles.unsqueeze(1)).sum(2)
        coef = -gd_total * d.pow(3)
    if gw is not None:
        gwd = gw * d.reshape(*d.shape, 1, 1, 1) if demodulate else gw
        g_weight = torch.einsum('noihw,ni->oihw', gwd, styles)
        g_styles = torch.einsum('noihw,oihw->ni', gwd, weight)
    if coef is not None:
        gw2 = weight * (coef.t() @ ssq).reshape(*wsq.shape, 1, 1)
        gs2 = styles * (coef @ wsq)
        g_weight = gw2 if g_weight is None else g_weight + gw2
        g_styles = gs2 if g_styles is None else g_styles + gs2
    return g_weight, g_styles


@functools.lru_cache(maxsize=None)
def _modulate_function(demodulate, fused):
    """autograd.Function returning (w, dcoefs), w or dcoefs for one (demodulate, fused) setting (cached)."""

    class Modulate(torch.autograd.Function):
        @staticmethod
        def forward(ctx, weight, styles):
            w, d = _build.load_op('modconv').modulate(weight, styles, demodulate, fused)
            ctx.save_for_backward(weight, styles)
            if demodulate and fused:
                return w, d
            return w if fused else d

        @staticmethod
        def backward(ctx, *grads):
            weight, styles = ctx.saved_tensors
            gw = grads[0] if fused else None
            gd = grads[-1] if demodulate else None
            g_weight, g_styles = _modulate_grads(weight, styles, gw, gd, demodulate)
            return (g_weight if ctx.needs_input_grad[0] else None), (g_styles if ctx.needs_input_grad[1] else None)

    return Modulate
