"""Tests of filtered_lrelu (ops/filtered_lrelu.py, ops/_cuda_filtered_lrelu.py).

- The reference against an independent float64 numpy evaluation of the definition (zero
  insertion, padding, explicit 2-D convolution loops, activation, convolution, decimation).
- Its fast no-autograd path against the plain composition, bit for bit; gradcheck/gradgradcheck.
- The CUDA path's autograd wiring on the CPU, with the kernel replaced by a Python model of what it
  computes (`kernel_model`, also the expected values of the CPU emulation in test_build.py).
- `cuda` tests of the real kernel against the reference (skipped without a GPU).
"""

import types

import numpy as np
import pytest
import torch

from ops import _build, _cuda_filtered_lrelu
from ops import filtered_lrelu as fl_mod
from ops import upfirdn2d as upfirdn2d_mod
from ops.filtered_lrelu import filtered_lrelu

# ----------------------------------------------------------------------------
# Independent float64 definition (numpy).


def _np_filter2d(f, flip_filter):
    f = np.asarray(f, dtype=np.float64)
    f2 = np.outer(f, f) if f.ndim == 1 else f
    return f2 if flip_filter else f2[::-1, ::-1]  # taps as correlated with the image


def _np_upfirdn(x, f2c, up, down, pad):
    """Zero-insert by `up`, pad (x0, x1, y0, y1; negative crops), correlate with f2c (valid), keep every down-th pixel."""
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    u = np.pad(u, ((0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
    u = u[:, :, max(-py0, 0):u.shape[2] - max(-py1, 0), max(-px0, 0):u.shape[3] - max(-px1, 0)]
    kh, kw = f2c.shape
    oh, ow = u.shape[2] - kh + 1, u.shape[3] - kw + 1
    out = np.zeros((n, c, oh, ow))
    for a in range(kh):
        for b in range(kw):
            out += f2c[a, b] * u[:, :, a:a + oh, b:b + ow]
    return out[:, :, ::down, ::down]


def np_filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    x = np.asarray(x, dtype=np.float64)
    if b is not None:
        x = x + np.asarray(b, dtype=np.float64)[None, :, None, None]
    fu2 = _np_filter2d(np.ones(1) if fu is None else fu, flip_filter) * up ** 2
    fd2 = _np_filter2d(np.ones(1) if fd is None else fd, flip_filter)
    pad = [padding] * 4 if isinstance(padding, int) else ([padding[0], padding[0], padding[1], padding[1]] if len(padding) == 2 else padding)
    m = _np_upfirdn(x, fu2, up, 1, pad)
    m = np.where(m > 0, m, m * slope) * gain
    if clamp is not None:
        m = np.clip(m, -clamp, clamp)
    return _np_upfirdn(m, fd2, 1, down, [0, 0, 0, 0])


def _filter(spec, seed):
    g = torch.Generator().manual_seed(seed)
    if spec is None:
        return None
    shape = [spec] if isinstance(spec, int) else list(spec)
    return torch.rand(shape, generator=g, dtype=torch.float64) + 0.2


# (fu spec, fd spec, up, down, padding): separable [taps], 2-D (h, w) or None; all padding forms.
CASES = [
    (4, 4, 1, 1, 1),
    (8, 6, 2, 2, [3, 4]),
    (12, 12, 2, 2, [5, 4, 5, 4]),
    (8, 4, 4, 2, [-2, -3, -1, -4]),
    (8, (4, 4), 2, 1, [3, 2, 3, 2]),
    ((6, 6), (3, 5), 2, 4, [1, 6, 2, 5]),
    ((3, 5), 6, 1, 2, [2, 2, 1, 3]),
    (None, 4, 1, 4, [0, 3, 1, 2]),
    (6, None, 4, 1, 0),
    (None, None, 2, 2, [0, 1]),
]


@pytest.mark.parametrize('case', range(len(CASES)))
@pytest.mark.parametrize('flip_filter', [False, True])
def test_reference_matches_numpy_definition(case, flip_filter):
    fu_spec, fd_spec, up, down, padding = CASES[case]
    fu, fd = _filter(fu_spec, 1 + case), _filter(fd_spec, 100 + case)
    g = torch.Generator().manual_seed(case)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64) * 2
    b = torch.randn(3, generator=g, dtype=torch.float64)
    for gain, slope, clamp, bias in ((np.sqrt(2), 0.2, None, b), (1.7, 0.05, 0.9, b), (1.0, 0.0, 2.0, None)):
        want = np_filtered_lrelu(x.numpy(), None if fu is None else fu.numpy(), None if fd is None else fd.numpy(),
                                 None if bias is None else bias.numpy(), up, down, padding, gain, slope, clamp, flip_filter)
        for grad in (False, True):  # the fast path and the composition
            xx = x.clone().requires_grad_(grad)
            y = filtered_lrelu(xx, fu, fd, bias, up, down, padding, gain, slope, clamp, flip_filter, impl='ref')
            assert y.shape == want.shape
            np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-10, atol=1e-10)


def test_reference_float32_and_channels_last():
    fu, fd = _filter(12, 3).float(), _filter((6, 6), 4).float()
    x = torch.randn(2, 5, 11, 10)
    b = torch.randn(5)
    want = np_filtered_lrelu(x.numpy(), fu.numpy(), fd.numpy(), b.numpy(), 2, 2, [5, 4, 5, 4], np.sqrt(2), 0.2, 1.0, False)
    for xx in (x, x.contiguous(memory_format=torch.channels_last)):
        y = filtered_lrelu(xx, fu, fd, b, up=2, down=2, padding=[5, 4, 5, 4], clamp=1.0, impl='ref')
        assert y.dtype == torch.float32
        assert y.is_contiguous(memory_format=torch.channels_last) == (xx.stride(1) == 1)
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)


def test_fast_reference_matches_composition(monkeypatch):
    # Small chunks so that several steps (and partial last chunks) are taken.
    monkeypatch.setattr(fl_mod, 'REF_CHUNK_BYTES', 3000)
    fu, fd = _filter(12, 5).float(), _filter(12, 6).float()
    fu, fd = fu / fu.sum(), fd / fd.sum()
    x = torch.randn(3, 7, 17, 16) * 3
    b = torch.randn(7)
    for clamp, bias, pad in ((None, b, [5, 4, 5, 4]), (2.5, None, [-2, -3, -1, -4])):
        args = (fu, fd, bias, 2, 2, *upfirdn2d_mod._parse_padding(pad), float(np.sqrt(2)), 0.2, clamp, False)
        fast, plain = fl_mod._filtered_lrelu_ref(x, *args), fl_mod._compose(x, *args)
        # Same operations; convolutions of fewer planes may sum in another order (last-bit rounding).
        assert fast.shape == plain.shape
        assert (fast - plain).abs().max() <= 8 * torch.finfo(torch.float32).eps * plain.abs().max()


def test_band_pass_matches_upfirdn2d_along_each_axis():
    g = torch.Generator().manual_seed(9)
    for up, down, p0, p1, taps in ((4, 1, -6, -9, 24), (2, 1, 9, 8, 12), (1, 2, 0, 0, 12), (1, 2, 3, -2, 5), (2, 2, 1, 4, 7),
                                   (3, 2, -4, 1, 5), (1, 1, 2, 1, 1), (2, 3, 11, -5, 6)):
        x = torch.randn(2, 3, 17, 19, generator=g, dtype=torch.float64)
        h = torch.randn(taps, generator=g, dtype=torch.float64)
        for step in (1, 8, 32):
            fl_mod.BAND_STEP = step
            try:
                got_x = fl_mod._band_pass(x, h, -1, up, down, p0, p1)
                got_y = fl_mod._band_pass(x, h, -2, up, down, p0, p1)
            finally:
                fl_mod.BAND_STEP = 8
            want_x = upfirdn2d_mod._upfirdn2d_ref(x, h[None], up, 1, down, 1, p0, p1, 0, 0, False, 1.0)
            want_y = upfirdn2d_mod._upfirdn2d_ref(x, h[:, None], 1, up, 1, down, 0, 0, p0, p1, False, 1.0)
            torch.testing.assert_close(got_x, want_x, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(got_y, want_y, rtol=1e-12, atol=1e-12)


def test_reference_gradients():
    fu, fd = _filter(4, 7), _filter((3, 3), 8)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)

    def fn(x, b):
        return filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=[2, 1, 1, 2], gain=1.3, slope=0.2, clamp=1.5, impl='ref')

    assert torch.autograd.gradcheck(fn, (x, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, b), fast_mode=True)


def test_argument_errors():
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match='up must be a positive integer, got 0'):
        filtered_lrelu(x, up=0)
    with pytest.raises(ValueError, match=r'b must be a tensor of shape \[2\], got \[3\]'):
        filtered_lrelu(x, b=torch.ones(3))
    with pytest.raises(ValueError, match='clamp must be non-negative'):
        filtered_lrelu(x, clamp=-1)
    with pytest.raises(ValueError, match=r'smaller than fd \(12x12\)'):
        filtered_lrelu(x, fd=torch.ones(12))
    with pytest.raises(ValueError, match='padding: expected'):
        filtered_lrelu(x, padding=[1, 2, 3])
    with pytest.raises(ValueError, match="impl must be one of"):
        filtered_lrelu(x, impl='fast')
    with pytest.raises(ValueError, match="impl='cuda' needs CUDA tensors"):
        filtered_lrelu(x, impl='cuda')

# ----------------------------------------------------------------------------
# Model of the kernel (one pass: stage 1, middle, stage 2) built from the upfirdn2d reference.


def kernel_model(x, f1, f2, b, si, g, mode, gain, slope, clamp):
    """(y, classes) the kernel computes for geometry g = (up, p1x, p1y, down, p2x, p2y, m_h, m_w, out_h, out_w, in_h, in_w)."""
    up, p1x, p1y, down, p2x, p2y, m_h, m_w, out_h, out_w, in_h, in_w = g
    k1h, k1w = _cuda_filtered_lrelu._size(f1)
    k2h, k2w = _cuda_filtered_lrelu._size(f2)
    if b is not None:
        x = x + b.reshape(1, -1, 1, 1)
    # Trailing paddings that make each stage produce exactly the given size (correlation: flip_filter=True).
    m = upfirdn2d_mod._upfirdn2d_ref(x, f1, up, up, 1, 1, p1x, m_w + k1w - 1 - in_w * up - p1x, p1y, m_h + k1h - 1 - in_h * up - p1y,
                                     True, 1.0)
    classes = None
    if mode == 0:
        classes = torch.where(m > 0, 0, 1).to(torch.uint8)
        v = torch.where(m > 0, m, m * slope) * gain
        if clamp is not None:
            classes = torch.where(v.abs() > clamp, 2, classes).to(torch.uint8)
            v = v.clamp(-clamp, clamp)
    else:
        d = torch.tensor([gain, gain * slope, 0.0], dtype=m.dtype)[si.long()]
        v = m * d
    y = upfirdn2d_mod._upfirdn2d_ref(v, f2, 1, 1, down, down, p2x, (out_w - 1) * down + k2w - m_w - p2x,
                                     p2y, (out_h - 1) * down + k2h - m_h - p2y, True, 1.0)
    return y, classes


def fake_kernel(x, f1, f2, b, si, up, p1x, p1y, m_h, m_w, down, p2x, p2y, out_h, out_w, mode, gain, slope, clamp, write_classes):
    """Stand-in for the compiled operator (same arguments and results) computed by kernel_model."""
    g = (up, p1x, p1y, down, p2x, p2y, m_h, m_w, out_h, out_w, int(x.shape[2]), int(x.shape[3]))
    with torch.no_grad():
        y, classes = kernel_model(x.double(), f1.double(), f2.double(), None if b is None else b.double(), si, g, mode, gain, slope,
                                  None if clamp < 0 else clamp)
    return y.to(x.dtype), (classes if write_classes else torch.empty([0], dtype=torch.uint8))


# Kernel cases: (fu spec, fd spec, up, down, padding, gain, slope, clamp, input shape).
EMU_CASES = [
    dict(fu=8, fd=6, up=2, down=2, padding=[3, 4, 2, 5], gain=1.4, slope=0.2, clamp=None, shape=[1, 2, 9, 11]),
    dict(fu=(4, 4), fd=(3, 3), up=1, down=1, padding=[1, 2, 2, 1], gain=1.0, slope=0.1, clamp=0.8, shape=[2, 1, 7, 6]),
    dict(fu=12, fd=4, up=4, down=2, padding=[-6, -5, -3, -4], gain=1.4, slope=0.2, clamp=1.0, shape=[1, 2, 8, 9]),
    dict(fu=(3, 5), fd=5, up=2, down=4, padding=[2, 3, 1, 2], gain=0.7, slope=0.3, clamp=None, shape=[1, 1, 8, 9]),
]


def kernel_args(case, dtype, adjoint=False):
    """Inputs and geometry of the kernel for an EMU_CASES entry (the forward pass, or its adjoint)."""
    g = torch.Generator().manual_seed(sum(case['shape']) + case['up'])
    x = (torch.randn(case['shape'], generator=g, dtype=torch.float64) * 2).to(dtype)
    b = torch.randn(case['shape'][1], generator=g, dtype=torch.float64).to(dtype)
    fu, fd = _filter(case['fu'], 11), _filter(case['fd'], 12)
    pads = upfirdn2d_mod._parse_padding(case['padding'])
    f1, f2, geom = _cuda_filtered_lrelu.setup(x.shape[2], x.shape[3], fu, fd, case['up'], case['down'], *pads, False, dtype, 'cpu')
    if adjoint:
        geom = _cuda_filtered_lrelu.adjoint_geometry(geom, _cuda_filtered_lrelu._size(f1), _cuda_filtered_lrelu._size(f2))
        f1, f2 = _cuda_filtered_lrelu._reverse(f2), _cuda_filtered_lrelu._reverse(f1)
    up, p1x, p1y, down, p2x, p2y, m_h, m_w, out_h, out_w, in_h, in_w = geom
    k1h, k1w = _cuda_filtered_lrelu._size(f1)
    k2h, k2w = _cuda_filtered_lrelu._size(f2)
    return dict(x=x, b=b, f1=f1, f2=f2, g=geom, sizes=[in_h, in_w, m_h, m_w, out_h, out_w], geom=[up, p1x, p1y, down, p2x, p2y],
                filt=[k1w, k1h, int(f1.ndim == 1), k2w, k2h, int(f2.ndim == 1)])


@pytest.fixture
def fake_kernels(monkeypatch):
    lib = types.SimpleNamespace(filtered_lrelu=fake_kernel)
    monkeypatch.setattr(_build, 'load_op', lambda name: lib)


@pytest.mark.parametrize('case', range(len(EMU_CASES)))
def test_kernel_model_matches_reference(case):
    """The kernel's decomposition (taps, geometry) reproduces the op; its adjoint pass is the transpose."""
    c = EMU_CASES[case]
    a = kernel_args(c, torch.float64)
    y, classes = kernel_model(a['x'], a['f1'], a['f2'], a['b'], None, a['g'], 0, c['gain'], c['slope'], c['clamp'])
    want = filtered_lrelu(a['x'], _filter(c['fu'], 11), _filter(c['fd'], 12), a['b'], c['up'], c['down'], c['padding'], c['gain'],
                          c['slope'], c['clamp'], impl='ref')
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    adj = kernel_args(c, torch.float64, adjoint=True)
    u = torch.randn_like(a['x'])
    v = torch.randn_like(y)
    fwd, _ = kernel_model(u, a['f1'], a['f2'], None, classes, a['g'], 1, c['gain'], c['slope'], None)
    bwd, _ = kernel_model(v, adj['f1'], adj['f2'], None, classes, adj['g'], 1, c['gain'], c['slope'], None)
    assert bwd.shape == u.shape
    torch.testing.assert_close((fwd * v).sum(), (u * bwd).sum(), rtol=1e-10, atol=1e-10)  # <A u, v> = <u, A^T v>


@pytest.mark.parametrize('case', range(len(EMU_CASES)))
def test_cuda_autograd_wiring(fake_kernels, case):
    c = EMU_CASES[case]
    fu, fd = _filter(c['fu'], 11), _filter(c['fd'], 12)
    x = torch.randn(c['shape'], dtype=torch.float64, requires_grad=True)
    b = torch.randn(c['shape'][1], dtype=torch.float64, requires_grad=True)
    pads = upfirdn2d_mod._parse_padding(c['padding'])

    def fn(x, b):
        return _cuda_filtered_lrelu.filtered_lrelu(x, fu, fd, b, c['up'], c['down'], *pads, c['gain'], c['slope'], c['clamp'], False)

    def ref(x, b):
        return filtered_lrelu(x, fu, fd, b, c['up'], c['down'], c['padding'], c['gain'], c['slope'], c['clamp'], impl='ref')

    y = fn(x, b)
    torch.testing.assert_close(y, ref(x, b))
    dy = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, [x, b], dy), torch.autograd.grad(ref(x, b), [x, b], dy))
    assert torch.autograd.gradcheck(fn, (x, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, b), fast_mode=True)


def test_cuda_path_records_classes_only_for_gradients(fake_kernels):
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    y = _cuda_filtered_lrelu.filtered_lrelu(x, _filter(4, 1), _filter(4, 2), None, 2, 2, 2, 1, 2, 1, 1.4, 0.2, None, False)
    assert y.grad_fn is None
    y = _cuda_filtered_lrelu.filtered_lrelu(x.requires_grad_(True), _filter(4, 1), _filter(4, 2), None, 2, 2, 2, 1, 2, 1, 1.4, 0.2, None, False)
    classes = [t for t in y.grad_fn.saved_tensors if t is not None and t.dtype == torch.uint8]
    assert len(classes) == 1 and list(classes[0].shape) == [1, 2, 12 + 3 - 3, 12 + 3 - 3]

# ----------------------------------------------------------------------------
# Real kernel (GPU).

GPU_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
FLOOR = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', GPU_DTYPES)
@pytest.mark.parametrize('case', range(len(CASES)))
def test_cuda_matches_reference(case, dtype):
    fu_spec, fd_spec, up, down, padding = CASES[case]
    fu, fd = _filter(fu_spec, 1 + case), _filter(fd_spec, 100 + case)
    fu = None if fu is None else fu.float().cuda()
    fd = None if fd is None else fd.float().cuda()
    for shape in ([2, 3, 7, 9], [1, 4, 37, 70]):  # odd sizes; several tiles
        x64 = torch.randn(shape, dtype=torch.float64, device='cuda') * 2
        b64 = torch.randn(shape[1], dtype=torch.float64, device='cuda')
        ref64 = filtered_lrelu(x64, fu, fd, b64, up, down, padding, clamp=1.5, impl='ref')
        ref_lp = filtered_lrelu(x64.to(dtype), fu, fd, b64.to(dtype), up, down, padding, clamp=1.5, impl='ref')
        for x in (x64.to(dtype), x64.to(dtype).contiguous(memory_format=torch.channels_last)):
            y = filtered_lrelu(x, fu, fd, b64.to(dtype), up, down, padding, clamp=1.5, impl='cuda')
            assert y.dtype == dtype and y.shape == ref64.shape
            err = (y.double() - ref64).abs()
            bound = 2 * (ref_lp.double() - ref64).abs().max() + FLOOR[dtype] * (1 + ref64.abs())
            assert (err <= bound).all(), f'case {case} {dtype} {shape}: max error {err.max().item():.3g}'


@pytest.mark.cuda
@pytest.mark.parametrize('case', range(len(CASES)))
def test_cuda_gradients(case):
    fu_spec, fd_spec, up, down, padding = CASES[case]
    fu, fd = _filter(fu_spec, 1 + case), _filter(fd_spec, 100 + case)
    fu = None if fu is None else fu.cuda()
    fd = None if fd is None else fd.cuda()
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, device='cuda', requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, device='cuda', requires_grad=True)

    def fn(x, b):
        return filtered_lrelu(x, fu, fd, b, up, down, padding, clamp=1.5, impl='cuda')

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))
    # float32, odd size, against the reference's gradients.
    x32 = torch.randn(2, 3, 19, 23, device='cuda', requires_grad=True)
    b32 = torch.randn(3, device='cuda', requires_grad=True)
    f32 = [None if f is None else f.float() for f in (fu, fd)]
    grads = []
    for impl in ('cuda', 'ref'):
        y = filtered_lrelu(x32, *f32, b32, up, down, padding, clamp=1.5, impl=impl)
        grads.append(torch.autograd.grad(y, [x32, b32], torch.ones_like(y)))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
def test_cuda_stylegan3_layer_shapes():
    """A StyleGAN3-T up-4 layer and an R layer with a 2-D down filter, fp16, against the float32 reference."""
    g = torch.Generator().manual_seed(0)
    for fu, fd, up, pad, shape in ((torch.rand(24, generator=g), torch.rand(12, generator=g), 4, [-6, -9, -6, -9], [2, 16, 54, 54]),
                                   (torch.rand(12, generator=g), torch.rand(12, 12, generator=g), 2, [11, 10, 11, 10], [2, 16, 36, 36])):
        fu, fd = (fu / fu.sum()).cuda(), (fd / fd.sum()).cuda()
        x = torch.randn(shape, device='cuda')
        b = torch.randn(shape[1], device='cuda')
        want = filtered_lrelu(x, fu, fd, b, up, 2, pad, clamp=256, impl='ref')
        got = filtered_lrelu(x.half(), fu, fd, b.half(), up, 2, pad, clamp=256, impl='cuda')
        torch.testing.assert_close(got.float(), want, rtol=1e-2, atol=1e-2)

# ----------------------------------------------------------------------------
# bench_ops.py's StyleGAN3 layer table against the NVlabs facts file.

FACTS = '/work/shared/reference/nvlabs_stylegan3_facts.md'


def _facts_layers(section):
    import os
    if not os.path.isfile(FACTS):
        pytest.skip(f'{FACTS} not present')
    text = open(FACTS, encoding='utf-8').read()
    text = text[text.index(section):]
    rows = []
    for line in text.splitlines()[1:]:
        if line.startswith('## '):
            break
        cells = [c.strip() for c in line.strip('|').split('|')]
        if len(cells) == 21 and cells[0].startswith('L'):
            rows.append(cells)
    return rows


def test_bench_stylegan3_layers_match_facts():
    import json

    import bench_ops
    for cfg, section, kernel in (('T', '## stylegan3-t, 256x256', 3), ('R', '## stylegan3-r, 256x256', 1)):
        facts = [r for r in _facts_layers(section) if r[1] == 'False']  # not ToRGB
        ours = bench_ops.sg3_layers(256, cfg)
        assert [l['name'] for l in ours] == [r[0] for r in facts]
        for l, r in zip(ours, facts):
            assert l['channels'] == int(r[5]) and l['size'] == json.loads(r[6])[0] + kernel - 1
            assert (l['up'], l['down'], l['up_taps'], l['down_taps']) == (int(r[15]), int(r[16]), int(r[17]), int(r[18]))
            assert l['padding'] == json.loads(r[19]) and l['radial'] == (r[20] == 'True'), l['name']


def test_bench_summary_table():
    import bench_ops
    rows = [dict(op='filtered_lrelu', dtype='fp16', pass_='fwd', gbps=g, speedup=s) for g, s in ((100.0, 2.0), (300.0, 8.0), (200.0, 4.0))]
    rows.append(dict(op='bias_act', dtype='fp16', pass_='fwd', gbps=1000.0, speedup=1.5))
    lines = bench_ops.summary_lines('NVIDIA H200', 4000.0, rows, {('filtered_lrelu', 'fp16'): None, ('bias_act', 'fp16'): 'x forward: error 1'})
    flrelu = [line for line in lines if 'filtered_lrelu' in line][0].split()
    assert flrelu == ['filtered_lrelu', 'fp16', 'fwd', '3', '200', '5.0', '4.00x', 'pass']  # median, % of copy, geometric mean
    assert [line for line in lines if ' bias_act ' in line][0].split()[-1] == 'FAIL'
    assert lines[-1] == 'self-check bias_act fp16: FAIL x forward: error 1'
