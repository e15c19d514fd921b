"""bias_act: reference path vs numpy formulas, defaults table, dtypes, layouts, gradients, errors."""

import numpy as np
import pytest
import torch

from ops import bias_act as B
from tests.ops_reference import bias_act_np

ACTS = ['linear', 'relu', 'lrelu', 'tanh', 'sigmoid', 'elu', 'selu', 'softplus', 'swish']


def test_activation_table():
    assert list(B.activation_funcs) == ACTS
    assert [B.activation_funcs[a].cuda_idx for a in ACTS] == list(range(1, 10))
    gains = {a: B.activation_funcs[a].def_gain for a in ACTS}
    assert gains == pytest.approx(dict(linear=1, relu=np.sqrt(2), lrelu=np.sqrt(2), tanh=1, sigmoid=1, elu=1, selu=1, softplus=1, swish=np.sqrt(2)))
    assert B.activation_funcs['lrelu'].def_alpha == 0.2
    assert [a for a in ACTS if B.activation_funcs[a].has_2nd_grad] == ['tanh', 'sigmoid', 'elu', 'selu', 'softplus', 'swish']


@pytest.mark.parametrize('act', ACTS)
@pytest.mark.parametrize('with_bias', [False, True])
@pytest.mark.parametrize('clamp', [None, 0.7])
def test_matches_formula(act, with_bias, clamp):
    x = torch.randn([3, 5, 4, 2], dtype=torch.float64) * 3
    b = torch.randn([5], dtype=torch.float64) if with_bias else None
    y = B.bias_act(x, b, act=act, clamp=clamp, impl='ref')
    spec = B.activation_funcs[act]
    ref = bias_act_np(x.numpy(), None if b is None else b.numpy(), 1, act, spec.def_alpha, spec.def_gain, clamp)
    torch.testing.assert_close(y, torch.from_numpy(ref), rtol=1e-12, atol=1e-12)
    if clamp is not None:
        assert y.abs().max() <= clamp


@pytest.mark.parametrize('dim,shape', [(0, [6, 3]), (2, [2, 3, 4, 5]), (-1, [2, 3, 5]), (1, [4, 7])])
def test_dims_alpha_gain(dim, shape):
    x = torch.randn(shape, dtype=torch.float64)
    b = torch.randn([shape[dim]], dtype=torch.float64)
    y = B.bias_act(x, b, dim=dim, act='lrelu', alpha=0.1, gain=3.0, clamp=2.5, impl='ref')
    ref = bias_act_np(x.numpy(), b.numpy(), dim % len(shape), 'lrelu', 0.1, 3.0, 2.5)
    torch.testing.assert_close(y, torch.from_numpy(ref), rtol=1e-12, atol=1e-12)


def test_no_bias_any_shape():
    x = torch.randn([7], dtype=torch.float64)
    torch.testing.assert_close(B.bias_act(x, act='swish', impl='ref'), torch.from_numpy(bias_act_np(x.numpy(), None, 0, 'swish', 0, np.sqrt(2), None)))
    s = torch.tensor(1.5, dtype=torch.float64)
    assert B.bias_act(s, act='relu', gain=1, impl='ref').item() == 1.5


@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-6), (torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
@pytest.mark.parametrize('act', ACTS)
def test_low_precision(dtype, tol, act):
    x = torch.randn([4, 6, 3, 3]) * 2
    b = torch.randn([6])
    y = B.bias_act(x.to(dtype), b.to(dtype), act=act, clamp=2.0, impl='ref')
    assert y.dtype == dtype and y.shape == x.shape
    spec = B.activation_funcs[act]
    ref = bias_act_np(x.to(dtype).double().numpy(), b.to(dtype).double().numpy(), 1, act, spec.def_alpha, spec.def_gain, 2.0)
    torch.testing.assert_close(y.double(), torch.from_numpy(ref), rtol=tol, atol=tol)


def test_bias_cast_to_input_dtype():
    x = torch.randn([2, 3, 2, 2], dtype=torch.float16)
    y = B.bias_act(x, torch.randn([3]), act='lrelu', impl='ref')
    assert y.dtype == torch.float16


def test_channels_last():
    x = torch.randn([2, 5, 3, 4]).contiguous(memory_format=torch.channels_last)
    b = torch.randn([5])
    y = B.bias_act(x, b, act='lrelu', clamp=1.0, impl='ref')
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, B.bias_act(x.contiguous(), b, act='lrelu', clamp=1.0, impl='ref'))


@pytest.mark.parametrize('act', ACTS)
def test_gradcheck(act):
    x = (torch.randn([2, 3, 2, 2], dtype=torch.float64) * 2).requires_grad_()
    b = torch.randn([3], dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: B.bias_act(x, b, act=act, clamp=1.5, impl='ref')
    assert torch.autograd.gradcheck(fn, [x, b], fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, [x, b], fast_mode=True)
    fn = lambda x, b: B.bias_act(x, b, dim=2, act=act, gain=0.5, impl='ref')
    b2 = torch.randn([2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, [x, b2], fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, [x, b2], fast_mode=True)


def test_errors():
    x = torch.randn([2, 3, 4])
    with pytest.raises(ValueError, match=r"act: unknown activation 'gelu'; valid: linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish"):
        B.bias_act(x, act='gelu')
    with pytest.raises(ValueError, match=r'b: expected length x.shape\[1\] = 3 .* got 4'):
        B.bias_act(x, torch.zeros([4]))
    with pytest.raises(ValueError, match=r'b: expected length x.shape\[2\] = 4'):
        B.bias_act(x, torch.zeros([3]), dim=-1)
    with pytest.raises(ValueError, match='b: expected a 1-D bias tensor, got 2-D'):
        B.bias_act(x, torch.zeros([3, 1]))
    with pytest.raises(ValueError, match='dim: 3 is out of range'):
        B.bias_act(x, torch.zeros([3]), dim=3)
    with pytest.raises(ValueError, match='clamp: expected None or a value >= 0'):
        B.bias_act(x, clamp=-1)
    with pytest.raises(ValueError, match="impl='cuda' needs CUDA tensors"):
        B.bias_act(x, impl='cuda')
    with pytest.raises(TypeError, match='x: expected a tensor'):
        B.bias_act(np.zeros([2]))
