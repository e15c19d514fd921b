"""Tests of the CUDA ops (ops/_cuda_*.py and ops/csrc) against the pure-PyTorch references.

Two kinds:
- CPU tests of the autograd wiring: the compiled kernel is replaced by a stand-in computed from the
  reference (forward) and PyTorch autograd of the reference (the derivatives the kernel modes
  return), so gradcheck/gradgradcheck check our backward formulas (the adjoint padding of
  upfirdn2d, the derivative chain of bias_act, the modulation gradients) without a GPU.
- `cuda` tests of the real kernels: every dtype with the error bounded by twice the error of the
  same-dtype reference (plus a small floor), channels_last and non-contiguous inputs, odd sizes,
  float64 gradcheck/gradgradcheck on the GPU, and tensors past 2^31 bytes/elements.
"""

import types

import pytest
import torch

from ops import _build, _cuda_bias_act, _cuda_modconv, _cuda_upfirdn2d
from ops import bias_act as bias_act_mod
from ops import modconv as modconv_mod
from ops import upfirdn2d as upfirdn2d_mod

ACTS = list(_cuda_bias_act.ACT_INDEX)

# Upfirdn2d cases: (filter taps or 2-D shape, up (x, y), down (x, y), padding (x0, x1, y0, y1), flip_filter, gain).
UPFIRDN_CASES = [
    (4, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0),      # upsample2d: tiled up-2 kernel
    (4, (1, 1), (2, 2), (1, 1, 1, 1), False, 1.0),      # downsample2d: tiled down-2 kernel
    (4, (1, 1), (1, 1), (2, 1, 2, 1), False, 1.0),      # filter2d: tiled plain kernel
    ((4, 4), (2, 2), (1, 1), (1, 2, 1, 2), True, 2.0),  # 2-D filter, correlation
    ((3, 2), (2, 1), (1, 3), (0, 2, -1, 3), False, 1.5),  # generic: odd filter, mixed factors, crop
    (1, (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0),      # identity
]


def _filter(spec, dtype=torch.float32, device='cpu'):
    shape = [spec] if isinstance(spec, int) else list(spec)
    g = torch.Generator().manual_seed(sum(shape))
    return (torch.rand(shape, generator=g, dtype=torch.float64) + 0.5).to(dtype=dtype, device=device)


def _ref_upfirdn2d(x, f, up, down, pad, flip, gain):
    return upfirdn2d_mod._upfirdn2d_ref(x, f, up[0], up[1], down[0], down[1], *pad, flip, gain)


def _cuda_upfirdn(x, f, up, down, pad, flip, gain):
    return _cuda_upfirdn2d.upfirdn2d(x, f, up[0], up[1], down[0], down[1], *pad, flip, gain)

# ----------------------------------------------------------------------------
# Stand-ins for the compiled kernels (CPU tests of the autograd wiring).


SELU_LAMBDA, SELU_LAMBDA_ALPHA = 1.0507009873554805, 1.7580993408473766


def _derivatives_from_output(act, f, alpha):
    """(act', d act' / d act) as functions of the activation value f, for the output-referenced activations."""
    pos, neg = (f > 0).to(f.dtype), (f < 0).to(f.dtype)
    table = {
        'linear': lambda: (torch.ones_like(f), torch.zeros_like(f)),
        'relu': lambda: (pos, torch.zeros_like(f)),
        'lrelu': lambda: (pos + (1 - pos) * alpha, torch.zeros_like(f)),
        'tanh': lambda: (1 - f * f, -2 * f),
        'sigmoid': lambda: (f * (1 - f), 1 - 2 * f),
        'elu': lambda: (torch.where(f > 0, torch.ones_like(f), f + 1), neg),
        'selu': lambda: (torch.where(f > 0, torch.full_like(f, SELU_LAMBDA), f + SELU_LAMBDA_ALPHA), neg),
        'softplus': lambda: (1 - torch.exp(-f), torch.exp(-f)),
    }
    return table[act]()


def _fake_bias_act(r, b, dy, gg, dim, act_idx, mode, ref_y, alpha, gain, clamp):
    """What the kernel returns in each mode: from autograd of the reference in float64 when r is the
    input x, from the closed-form derivatives in terms of the output when r is the output y."""
    act = {v: k for k, v in _cuda_bias_act.ACT_INDEX.items()}[act_idx]
    if ref_y:
        y = r.double()
        d1, d1y = _derivatives_from_output(act, y / gain if gain != 0 else torch.zeros_like(y), alpha)
        clamp_t = torch.tensor(clamp, dtype=r.dtype).item()  # a clamped output holds the clamp rounded to its dtype
        keep = (y.abs() < clamp_t).double() if clamp >= 0 else 1.0
        out = dy.double() * gain * d1 if mode == 1 else gg.double() * dy.double() * d1y
        return (out * keep).to(r.dtype)
    with torch.enable_grad():
        s = r.detach().double().requires_grad_(True)
        bb = None if b is None else b.detach().double()
        y = bias_act_mod._bias_act_ref(s, bb, dim, act, alpha, gain, None if clamp < 0 else clamp)
        if mode == 0:
            return y.detach().to(r.dtype)
        (d1,) = torch.autograd.grad(y.sum(), s, create_graph=True)
        if mode == 1:
            return (dy.double() * d1).detach().to(r.dtype)
        d2 = torch.autograd.grad(d1.sum(), s, allow_unused=True)[0] if d1.requires_grad else None
        d2 = torch.zeros_like(s) if d2 is None else d2
        return (gg.double() * dy.double() * d2).detach().to(r.dtype)


def _fake_upfirdn2d(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain):
    return upfirdn2d_mod._upfirdn2d_ref(x.detach(), f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain)


def _fake_modulate(weight, styles, demodulate, fused):
    with torch.no_grad():
        w, d = modconv_mod._modulate_ref(weight, styles, demodulate, fused)
    empty = weight.new_empty([0])
    return (empty if w is None else w), (empty if d is None else d)


@pytest.fixture
def fake_kernels(monkeypatch):
    lib = types.SimpleNamespace(bias_act=_fake_bias_act, upfirdn2d=_fake_upfirdn2d, modulate=_fake_modulate)
    monkeypatch.setattr(_build, 'load_op', lambda name: lib)


@pytest.mark.parametrize('act', ACTS)
def test_bias_act_autograd_wiring(fake_kernels, act):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    alpha, gain = 0.2, 1.7
    clamp = 1.5 if act in ('linear', 'tanh', 'swish') else None

    def fn(x, b):
        return _cuda_bias_act.bias_act(x, b, 1, act, alpha, gain, clamp)

    y = fn(x, b)
    torch.testing.assert_close(y, bias_act_mod._bias_act_ref(x, b, 1, act, alpha, gain, clamp))
    saved = [t for t in y.grad_fn.saved_tensors if t is not None]
    if _cuda_bias_act.REF[act] == 'y':  # the backward reads the output: the input can be freed
        assert [t.data_ptr() for t in saved] == ([y.data_ptr()] if (clamp is not None or act != 'linear') else [])
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_autograd_wiring_no_bias_channels_last(fake_kernels):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda x: _cuda_bias_act.bias_act(x, None, 1, 'softplus', 0.0, 1.0, None), (x,))


@pytest.mark.parametrize('case', range(len(UPFIRDN_CASES)))
def test_upfirdn2d_autograd_wiring(fake_kernels, case):
    fspec, up, down, pad, flip, gain = UPFIRDN_CASES[case]
    x = torch.randn(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    f = _filter(fspec)

    def fn(x):
        return _cuda_upfirdn(x, f, up, down, pad, flip, gain)

    assert fn(x).shape == _ref_upfirdn2d(x, f, up, down, pad, flip, gain).shape
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)  # random projections: few reference calls
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


def test_upfirdn2d_grad_padding_restores_input_size():
    # The adjoint's output size must equal the input size for every combination.
    for up in (1, 2, 3):
        for down in (1, 2, 3):
            for f in (1, 3, 4):
                for p0, p1 in ((0, 0), (2, 1), (-1, 3)):
                    h = 9
                    out = (h * up + p0 + p1 - f) // down + 1
                    if out < 1:
                        continue
                    q0, q1, _, _ = _cuda_upfirdn2d._grad_padding(h, h, out, out, f, f, up, up, down, down, p0, p0)
                    assert (out * down + q0 + q1 - f) // up + 1 == h


@pytest.mark.parametrize('demodulate,fused', [(True, True), (True, False), (False, True)])
def test_modulate_autograd_wiring(fake_kernels, demodulate, fused):
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)

    def fn(weight, styles):
        w, d = _cuda_modconv.modulate(weight, styles, demodulate, fused)
        return tuple(t for t in (w, d) if t is not None)

    got = _cuda_modconv.modulate(weight, styles, demodulate, fused)
    want = modconv_mod._modulate_ref(weight, styles, demodulate, fused)
    torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(fn, (weight, styles))
    assert torch.autograd.gradgradcheck(fn, (weight, styles))


def test_modulate_nothing_requested_and_bad_shapes():
    weight = torch.randn(3, 4, 3, 3)
    assert _cuda_modconv.modulate(weight, torch.randn(2, 4), False, False) == (None, None)
    with pytest.raises(ValueError, match=r'styles: expected shape \[N, 4\], got \[2, 5\]'):
        _cuda_modconv.modulate(weight, torch.randn(2, 5), True, True)
    with pytest.raises(ValueError, match=r'weight: expected shape \[O, I, kh, kw\], got \[3, 4\]'):
        _cuda_modconv.modulate(torch.randn(3, 4), torch.randn(2, 4), True, True)


def test_activation_numbering_matches_reference():
    assert {k: v.cuda_idx for k, v in bias_act_mod.activation_funcs.items()} == _cuda_bias_act.ACT_INDEX
    assert {k: v.has_2nd_grad for k, v in bias_act_mod.activation_funcs.items()} == _cuda_bias_act.HAS_2ND_GRAD

# ----------------------------------------------------------------------------
# Real kernels (GPU).

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
FLOOR = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 1e-2}


def _assert_close_to_ref(got, ref_same_dtype, ref64, name):
    """|got - ref64| <= 2 * max|ref_same_dtype - ref64| + floor * (1 + |ref64|) (flash-attention style bound)."""
    assert got.dtype == ref_same_dtype.dtype and got.shape == ref64.shape, f'{name}: {got.dtype} {list(got.shape)}'
    err = (got.double() - ref64).abs()
    bound = 2 * (ref_same_dtype.double() - ref64).abs().max() + FLOOR[got.dtype] * (1 + ref64.abs())
    worst = (err - bound).max().item()
    assert worst <= 0, f'{name}: error exceeds the bound by {worst:.3g} (max error {err.max().item():.3g})'


def _layouts(x):
    """The same values as contiguous, channels_last and non-contiguous (strided view) tensors."""
    wide = torch.empty(*x.shape[:-1], x.shape[-1] * 2, dtype=x.dtype, device=x.device)
    wide[..., ::2] = x
    out = {'contiguous': x.contiguous(), 'noncontig': wide[..., ::2]}
    if x.ndim == 4:
        out['channels_last'] = x.contiguous(memory_format=torch.channels_last)
    return out


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('act', ACTS)
def test_bias_act_cuda_matches_reference(act, dtype):
    x64 = torch.randn(3, 5, 7, 9, dtype=torch.float64, device='cuda') * 2
    b64 = torch.randn(5, dtype=torch.float64, device='cuda')
    spec = bias_act_mod.activation_funcs[act]
    alpha, gain, clamp = float(spec.def_alpha), float(spec.def_gain), (1.3 if act in ('lrelu', 'swish') else None)
    ref64 = bias_act_mod._bias_act_ref(x64, b64, 1, act, alpha, gain, clamp)
    ref_lp = bias_act_mod._bias_act_ref(x64.to(dtype), b64.to(dtype), 1, act, alpha, gain, clamp)
    for layout, x in _layouts(x64.to(dtype)).items():
        y = _cuda_bias_act.bias_act(x, b64.to(dtype), 1, act, alpha, gain, clamp)
        _assert_close_to_ref(y, ref_lp, ref64, f'{act} {dtype} {layout}')
        if layout == 'channels_last':
            assert y.is_contiguous(memory_format=torch.channels_last)
    y = _cuda_bias_act.bias_act(x64.to(dtype), None, 1, act, alpha, gain, None)
    _assert_close_to_ref(y, bias_act_mod._bias_act_ref(x64.to(dtype), None, 1, act, alpha, gain, None),
                         bias_act_mod._bias_act_ref(x64, None, 1, act, alpha, gain, None), f'{act} {dtype} no bias')


@pytest.mark.cuda
@pytest.mark.parametrize('act', ACTS)
def test_bias_act_cuda_gradients(act):
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64, device='cuda', requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, device='cuda', requires_grad=True)
    clamp = 1.5 if act in ('linear', 'tanh', 'swish') else None

    def fn(x, b):
        return _cuda_bias_act.bias_act(x, b, 1, act, 0.2, 1.3, clamp)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))
    # float32, dim 2, odd size: first and second-order gradients against the reference.
    x32 = torch.randn(3, 4, 129, dtype=torch.float32, device='cuda', requires_grad=True)
    b32 = torch.randn(129, dtype=torch.float32, device='cuda', requires_grad=True)
    grads = []
    for f in (_cuda_bias_act.bias_act, bias_act_mod._bias_act_ref):
        y = f(x32, b32, 2, act, 0.2, 1.3, clamp)
        gx, gb = torch.autograd.grad((y * y.detach()).sum(), [x32, b32], create_graph=True)
        ggx = torch.autograd.grad(gx.square().sum() + gb.sum(), [x32], allow_unused=True)[0]
        grads.append([gx, gb, torch.zeros_like(x32) if ggx is None else ggx])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('case', range(len(UPFIRDN_CASES)))
def test_upfirdn2d_cuda_matches_reference(case, dtype):
    fspec, up, down, pad, flip, gain = UPFIRDN_CASES[case]
    f = _filter(fspec, device='cuda')
    for shape in ([2, 3, 17, 23], [1, 2, 64, 200]):  # odd sizes; several tiles
        x64 = torch.randn(shape, dtype=torch.float64, device='cuda')
        ref64 = _ref_upfirdn2d(x64, f.double(), up, down, pad, flip, gain)
        ref_lp = _ref_upfirdn2d(x64.to(dtype), f, up, down, pad, flip, gain)
        for layout, x in _layouts(x64.to(dtype)).items():
            y = _cuda_upfirdn(x, f, up, down, pad, flip, gain)
            _assert_close_to_ref(y, ref_lp, ref64, f'case {case} {dtype} {layout} {shape}')
            if layout == 'channels_last' and shape[1] > 1:
                assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.cuda
@pytest.mark.parametrize('case', range(len(UPFIRDN_CASES)))
def test_upfirdn2d_cuda_gradients(case):
    fspec, up, down, pad, flip, gain = UPFIRDN_CASES[case]
    f = _filter(fspec, device='cuda')
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, device='cuda', requires_grad=True)

    def fn(x):
        return _cuda_upfirdn(x, f, up, down, pad, flip, gain)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
    # float32 channels_last gradient against the reference.
    x32 = torch.randn(2, 3, 16, 16, device='cuda').to(memory_format=torch.channels_last).requires_grad_(True)
    dy = None
    grads = []
    for fn32 in (_cuda_upfirdn, _ref_upfirdn2d):
        y = fn32(x32, f, up, down, pad, flip, gain)
        dy = torch.randn_like(y) if dy is None else dy
        grads.append(torch.autograd.grad(y, x32, dy)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('demodulate,fused', [(True, True), (True, False), (False, True)])
def test_modulate_cuda_matches_reference(dtype, demodulate, fused):
    for o, i, k in ((7, 5, 3), (32, 512, 3), (3, 300, 1)):
        w64 = torch.randn(o, i, k, k, dtype=torch.float64, device='cuda') / (i * k * k) ** 0.5
        s64 = torch.randn(4, i, dtype=torch.float64, device='cuda')
        ref64 = modconv_mod._modulate_ref(w64, s64, demodulate, fused)
        ref_lp = modconv_mod._modulate_ref(w64.to(dtype), s64.to(dtype), demodulate, fused)
        got = _cuda_modconv.modulate(w64.to(dtype), s64.to(dtype), demodulate, fused)
        for g, r_lp, r64, name in zip(got, ref_lp, ref64, ('w', 'dcoefs')):
            assert (g is None) == (r64 is None)
            if g is not None:
                _assert_close_to_ref(g, r_lp, r64, f'{name} {dtype} {o}x{i}x{k}')


@pytest.mark.cuda
@pytest.mark.parametrize('demodulate,fused', [(True, True), (True, False), (False, True)])
def test_modulate_cuda_gradients(demodulate, fused):
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64, device='cuda', requires_grad=True)
    styles = torch.randn(2, 4, dtype=torch.float64, device='cuda', requires_grad=True)

    def fn(weight, styles):
        return tuple(t for t in _cuda_modconv.modulate(weight, styles, demodulate, fused) if t is not None)

    assert torch.autograd.gradcheck(fn, (weight, styles))
    assert torch.autograd.gradgradcheck(fn, (weight, styles))


@pytest.mark.cuda
def test_kernels_reject_bad_arguments():
    lib_ba, lib_up, lib_mc = (_build.load_op(n) for n in ('bias_act', 'upfirdn2d', 'modconv'))
    x = torch.randn(2, 3, 4, 4, device='cuda')
    with pytest.raises(RuntimeError, match=r'b must have shape \[3\]'):
        lib_ba.bias_act(x, torch.randn(4, device='cuda'), None, None, 1, 1, 0, False, 0.0, 1.0, -1.0)
    with pytest.raises(RuntimeError, match='x must be float32, float16, bfloat16 or float64, got Int'):
        lib_ba.bias_act(x.int(), None, None, None, 1, 1, 0, False, 0.0, 1.0, -1.0)
    with pytest.raises(RuntimeError, match='dy is required'):
        lib_ba.bias_act(x, None, None, None, 1, 1, 1, False, 0.0, 1.0, -1.0)
    with pytest.raises(RuntimeError, match='b must be None when ref_y'):
        lib_ba.bias_act(x, torch.randn(3, device='cuda'), x, None, 1, 3, 1, True, 0.2, 1.0, -1.0)
    with pytest.raises(RuntimeError, match='f must be on'):
        lib_up.upfirdn2d(x, torch.ones(4), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match=r'x must have shape \[N, C, H, W\]'):
        lib_up.upfirdn2d(x[0], torch.ones(4, device='cuda'), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match='smaller than the filter'):
        lib_up.upfirdn2d(x, torch.ones(9, device='cuda'), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match=r'styles must have shape \[N, 3\]'):
        lib_mc.modulate(torch.randn(5, 3, 3, 3, device='cuda'), torch.randn(2, 4, device='cuda'), True, True)


@pytest.mark.cuda
@pytest.mark.slow
def test_large_tensors_use_64bit_indexing():
    free, _total = torch.cuda.mem_get_info()
    if free < 20 << 30:
        pytest.skip(f'needs 20 GiB of free GPU memory, {free >> 30} GiB free')
    # bias_act: 2^31 + 37 fp16 elements (> 2^31 elements, 4 GiB), channel dim last (NHWC-like).
    c = 37
    x = torch.randn((2**31 + 37) // c, c, device='cuda', dtype=torch.float16)
    b = torch.randn(c, device='cuda', dtype=torch.float16)
    y = _cuda_bias_act.bias_act(x, b, 1, 'lrelu', 0.2, 2**0.5, 256.0)
    for rows in (slice(0, 1000), slice(x.shape[0] - 1000, None)):
        torch.testing.assert_close(y[rows], bias_act_mod._bias_act_ref(x[rows], b, 1, 'lrelu', 0.2, 2**0.5, 256.0), rtol=1e-2, atol=1e-2)
    del x, y
    # upfirdn2d: > 2^31 bytes fp32 input in channels_last (generic kernel), downsampled NCHW (tiled kernel).
    x = torch.randn(1, 32, 4096, 4200, device='cuda').to(memory_format=torch.channels_last)
    assert x.numel() * x.element_size() > 2**31
    f = _filter(4, device='cuda')
    for up, down, pad in (((1, 1), (1, 1), (2, 1, 2, 1)), ((1, 1), (2, 2), (1, 1, 1, 1))):
        for xin in (x, x.contiguous()):
            y = _cuda_upfirdn(xin, f, up, down, pad, False, 1.0)
            for ch in (slice(0, 2), slice(30, 32)):
                torch.testing.assert_close(y[:, ch], _ref_upfirdn2d(xin[:, ch], f, up, down, pad, False, 1.0), rtol=1e-4, atol=1e-4)
            del y

# ----------------------------------------------------------------------------
# bench_ops.py


def test_bench_ops_without_gpu_exits_2():
    if torch.cuda.is_available():
        pytest.skip('a GPU is present')
    from click.testing import CliRunner

    import bench_ops
    result = CliRunner().invoke(bench_ops.main, ['--quick'])
    assert result.exit_code == 2
    assert 'needs a CUDA GPU' in result.output


def test_bench_ops_cases_and_runners_on_cpu():
    import bench_ops
    assert bench_ops.peak_bandwidth('NVIDIA H100 80GB HBM3') == 3350
    assert bench_ops.peak_bandwidth('NVIDIA H200') == 4800
    assert bench_ops.peak_bandwidth('NVIDIA A100-SXM4-80GB') == 2039
    assert bench_ops.peak_bandwidth('Some Future GPU') is None
    assert bench_ops.layer_shapes(1024)[0] == (4, 512) and bench_ops.layer_shapes(1024)[-1] == (1024, 32)
    assert bench_ops.layer_shapes(256)[-1] == (256, 64)
    full = bench_ops.cases(bench_ops.OPS, [256, 1024], [4, 32], large=True, quick=False)
    large = [c for c in full if 'large' in c['name']]
    assert large and all(2 * torch.Size(c['shape']).numel() >= 200e6 for c in large if c['op'] != 'upsample2d')
    assert {c['op'] for c in full} == {'bias_act', 'upsample2d', 'downsample2d', 'filter2d', 'modconv', 'grouped_conv', 'filtered_lrelu'}
    # Every kind of runner works on tiny CPU shapes with the reference implementation.
    tiny = {'bias_act': [2, 3, 8, 8], 'upsample2d': [2, 3, 4, 4], 'downsample2d': [2, 3, 8, 8], 'filter2d': [2, 3, 8, 8],
            'modconv': [2, 4, 3, 3, 3], 'grouped_conv': [2, 4, 3, 3, 3], 'filtered_lrelu': [2, 3, 10, 10]}
    flrelu = dict(up=2, down=2, up_taps=12, down_taps=12, padding=[11, 10, 11, 10], radial=True)
    for op, shape in tiny.items():
        for backward in (False, True):
            fn, nbytes = bench_ops.make_runner(dict(op=op, name=op, shape=shape, res=8, **flrelu), torch.float32, 'ref', backward, 0,
                                               device='cpu')
            fn(0)
            fn(1)
            assert nbytes is None or nbytes > 0


@pytest.mark.cuda
def test_bench_ops_quick_json(tmp_path):
    import json

    from click.testing import CliRunner

    import bench_ops
    path = tmp_path / 'bench.json'
    result = CliRunner().invoke(bench_ops.main, ['--quick', '--no-large', f'--json={path}'])
    assert result.exit_code == 0, result.output
    data = json.loads(path.read_text())
    assert data['copy_gbps'] > 0 and data['rows']
    assert all(r['ms'] > 0 for r in data['rows'])
