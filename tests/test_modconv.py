"""modulated_conv2d: fused vs non-fused vs a float64 per-sample loop, resampling, noise, the fp16
pre-normalization, gradients and error paths."""

import numpy as np
import pytest
import torch

from ops import upfirdn2d as U
from ops import modconv as M
from tests.ops_reference import modulated_conv2d_np

F4 = U.setup_filter([1, 3, 3, 1]).double()


def _inputs(batch=3, cin=4, cout=5, k=3, res=6, dtype=torch.float64):
    x = torch.randn([batch, cin, res, res], dtype=dtype)
    weight = torch.randn([cout, cin, k, k], dtype=dtype)
    styles = torch.randn([batch, cin], dtype=dtype) + 1
    return x, weight, styles


@pytest.mark.parametrize('up,down,k', [(1, 1, 3), (2, 1, 3), (1, 2, 3), (1, 1, 1), (2, 1, 1)])
@pytest.mark.parametrize('demodulate', [True, False])
@pytest.mark.parametrize('with_noise', [False, True])
def test_fused_nonfused_loop(up, down, k, demodulate, with_noise):
    x, weight, styles = _inputs(k=k)
    out_res = 6 * up // down
    noise = torch.randn([3, 1, out_res, out_res], dtype=torch.float64) if with_noise else None
    kw = dict(up=up, down=down, padding=k // 2, resample_filter=F4, demodulate=demodulate, flip_weight=(up == 1))
    ref = torch.from_numpy(modulated_conv2d_np(x.numpy(), weight.numpy(), styles.numpy(), None if noise is None else noise.numpy(), **kw))
    fused = M.modulated_conv2d(x, weight, styles, noise=noise, fused_modconv=True, impl='ref', **kw)
    nonfused = M.modulated_conv2d(x, weight, styles, noise=noise, fused_modconv=False, impl='ref', **kw)
    assert fused.shape == ref.shape == (3, 5, out_res, out_res)
    torch.testing.assert_close(fused, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(nonfused, ref, rtol=1e-10, atol=1e-10)


def test_demodulated_weights_have_unit_norm():
    _x, weight, styles = _inputs()
    w, dcoefs = M._modulate_ref(weight, styles, demodulate=True, fused=True)
    assert w.shape == (3, 5, 4, 3, 3) and dcoefs.shape == (3, 5)
    torch.testing.assert_close(w.square().sum(dim=[2, 3, 4]), torch.ones([3, 5], dtype=torch.float64), rtol=1e-7, atol=1e-7)
    expected = 1 / np.sqrt(((weight[None] * styles[:, None, :, None, None]).numpy() ** 2).sum(axis=(2, 3, 4)) + 1e-8)
    torch.testing.assert_close(dcoefs, torch.from_numpy(expected))
    w, dcoefs = M._modulate_ref(weight, styles, demodulate=True, fused=False)
    assert w is None and dcoefs.shape == (3, 5)
    w, dcoefs = M._modulate_ref(weight, styles, demodulate=False, fused=True)
    assert dcoefs is None
    torch.testing.assert_close(w, weight[None] * styles[:, None, :, None, None])
    assert M._modulate_ref(weight, styles, demodulate=False, fused=False) == (None, None)


@pytest.mark.parametrize('fused', [True, False])
def test_prenormalization_cancels_in_float64(fused):
    # The fp16 pre-normalization only rescales rows of weight and styles; demodulation undoes it.
    x, weight, styles = _inputs()
    styles = styles * 40
    w_n, s_n = M._prenormalize_fp16(weight, styles)
    torch.testing.assert_close(w_n.abs().amax(dim=[1, 2, 3]), torch.full([5], 1 / np.sqrt(4 * 9), dtype=torch.float64))
    torch.testing.assert_close(s_n.abs().amax(dim=1), torch.ones([3], dtype=torch.float64))
    a = M.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused, impl='ref')
    b = M.modulated_conv2d(x, w_n, s_n, padding=1, fused_modconv=fused, impl='ref')
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # only the 1e-8 epsilon of the rsqrt differs


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('up', [1, 2])
def test_fp16_matches_fp32(fused, up):
    x, weight, styles = _inputs(dtype=torch.float32)
    styles = styles * 100  # large styles would overflow fp16 without the pre-normalization
    x = x * 30
    noise = torch.randn([3, 1, 6 * up, 6 * up])
    kw = dict(up=up, padding=1, resample_filter=U.setup_filter([1, 3, 3, 1]), noise=noise, fused_modconv=fused, flip_weight=(up == 1), impl='ref')
    ref = M.modulated_conv2d(x, weight, styles, **kw)
    y = M.modulated_conv2d(x.half(), weight, styles, **kw)
    assert y.dtype == torch.float16
    assert torch.isfinite(y).all()
    scale = ref.abs().max().item()
    torch.testing.assert_close(y.float(), ref, rtol=1e-2, atol=2e-3 * scale)


def test_channels_last_and_bf16():
    x, weight, styles = _inputs(dtype=torch.float32)
    ref = M.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=False, impl='ref')
    xc = x.contiguous(memory_format=torch.channels_last)
    y = M.modulated_conv2d(xc, weight, styles, padding=1, fused_modconv=False, impl='ref')
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    y = M.modulated_conv2d(xc, weight, styles, padding=1, fused_modconv=True, impl='ref')
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    yb = M.modulated_conv2d(x.bfloat16(), weight, styles, padding=1, fused_modconv=True, impl='ref')
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb.float(), ref, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize('fused,up,demodulate', [(True, 1, True), (False, 1, True), (True, 2, True), (False, 2, False)])
def test_gradcheck(fused, up, demodulate):
    x, weight, styles = _inputs(batch=2, cin=2, cout=2, res=3)
    noise = torch.randn([2, 1, 3 * up, 3 * up], dtype=torch.float64)
    for t in (x, weight, styles):
        t.requires_grad_()
    fn = lambda x, w, s: M.modulated_conv2d(x, w, s, noise=noise, up=up, padding=1, resample_filter=F4,
                                            demodulate=demodulate, fused_modconv=fused, impl='ref')
    assert torch.autograd.gradcheck(fn, [x, weight, styles], fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, [x, weight, styles], fast_mode=True)


def test_errors():
    x, weight, styles = _inputs(dtype=torch.float32)
    with pytest.raises(ValueError, match=r'styles: expected shape \[3, 4\], got \[3, 5\]'):
        M.modulated_conv2d(x, weight, torch.randn([3, 5]))
    with pytest.raises(ValueError, match=r'x: expected shape \[3, 5, \*, \*\], got \[3, 4, 6, 6\]'):
        M.modulated_conv2d(x, torch.randn([5, 5, 3, 3]), torch.randn([3, 5]))
    with pytest.raises(ValueError, match='weight: expected a 4-D tensor, got 3-D'):
        M.modulated_conv2d(x, weight[0], styles)
    with pytest.raises(ValueError, match='x: expected a 4-D tensor, got 3-D'):
        M.modulated_conv2d(x[0], weight, styles)
    with pytest.raises(ValueError, match="impl='cuda' needs CUDA tensors"):
        M.modulated_conv2d(x, weight, styles, impl='cuda')
    with pytest.raises(ValueError, match='up: expected an int >= 1'):
        M.modulated_conv2d(x, weight, styles, up=0)
