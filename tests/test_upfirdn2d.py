"""upfirdn2d: reference path vs the numpy definition, vs the naive formulation, gradients,
dtypes, memory formats, wrappers and error paths."""

import random

import numpy as np
import pytest
import torch

from ops import upfirdn2d as U
from tests.ops_reference import upfirdn2d_np

FILTERS = {
    'none': None,
    'sep4': U.setup_filter([1, 3, 3, 1], separable=True),
    'sep3': torch.tensor([0.25, 0.5, -0.125]),
    '2d4': U.setup_filter([1, 3, 3, 1]),
    '2d3x2': torch.tensor([[0.5, -1.0], [2.0, 0.25], [0.75, 1.5]]),
}


def _f64(name):
    f = FILTERS[name]
    return None if f is None else f.double()  # gain is applied in the filter's dtype


def _ref(x, f, **kw):
    return torch.from_numpy(upfirdn2d_np(x.detach().double().numpy(), None if f is None else f.double().numpy(), **kw))

#----------------------------------------------------------------------------
# Values.

@pytest.mark.parametrize('up', [1, 2, 4])
@pytest.mark.parametrize('down', [1, 2, 4])
@pytest.mark.parametrize('fname', list(FILTERS))
def test_matches_definition_up_down(up, down, fname):
    f = _f64(fname)
    x = torch.randn([2, 3, 5, 7], dtype=torch.float64)
    fw = 1 if f is None else f.shape[-1]
    padding = [fw - 1, 2, 1, fw // 2]
    y = U.upfirdn2d(x, f, up=up, down=down, padding=padding, impl='ref')
    ref = _ref(x, f, up=up, down=down, padding=padding)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('padding', [0, 3, -1, (2, 1), (-1, 2), (0, 1, 2, 3), (-2, 3, 1, -1), (3, -2, -1, 4)])
@pytest.mark.parametrize('flip_filter', [False, True])
@pytest.mark.parametrize('fname', ['sep3', '2d3x2'])
def test_matches_definition_padding(padding, flip_filter, fname):
    f = _f64(fname)
    x = torch.randn([1, 2, 6, 5], dtype=torch.float64)
    kw = dict(up=(2, 3), down=(1, 2), padding=padding, flip_filter=flip_filter, gain=1.5)
    y = U.upfirdn2d(x, f, impl='ref', **kw)
    torch.testing.assert_close(y, _ref(x, f, **kw), rtol=1e-12, atol=1e-12)


def test_separable_equals_outer_product():
    f1 = torch.tensor([1.0, 2.0, -0.5, 0.25], dtype=torch.float64)
    x = torch.randn([2, 2, 6, 6], dtype=torch.float64)
    for kw in [dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=1, gain=0.5), dict(up=3, down=2, padding=(1, 2))]:
        a = U.upfirdn2d(x, f1, impl='ref', **kw)
        b = U.upfirdn2d(x, torch.outer(f1, f1), impl='ref', **kw)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_fast_matches_naive_random():
    rng = random.Random(1)
    checked = 0
    while checked < 80:
        up = (rng.choice([1, 2, 3, 4]), rng.choice([1, 2, 3, 4]))
        down = (rng.choice([1, 2, 3]), rng.choice([1, 2, 3, 4]))
        f = torch.randn([rng.randint(1, 6)]) if rng.random() < 0.4 else torch.randn([rng.randint(1, 5), rng.randint(1, 5)])
        padding = [rng.randint(-3, 5) for _ in range(4)]
        x = torch.randn([2, 3, rng.randint(1, 7), rng.randint(1, 7)], dtype=torch.float64)
        kw = dict(up=up, down=down, padding=padding, flip_filter=rng.random() < 0.5, gain=rng.choice([1.0, 2.5]))
        fw, fh = f.shape[-1], f.shape[0]
        if x.shape[3] * up[0] + padding[0] + padding[1] < fw or x.shape[2] * up[1] + padding[2] + padding[3] < fh:
            with pytest.raises(ValueError, match='smaller than the filter'):
                U.upfirdn2d(x, f, impl='ref', **kw)
            continue
        y = U.upfirdn2d(x, f, impl='ref', **kw)
        naive = U._upfirdn2d_naive(x, f, **kw)
        assert y.shape == naive.shape, kw
        torch.testing.assert_close(y, naive, rtol=1e-10, atol=1e-10)
        checked += 1


def test_naive_matches_definition():
    f = _f64('2d3x2')
    x = torch.randn([1, 2, 4, 5], dtype=torch.float64)
    kw = dict(up=(2, 3), down=(3, 1), padding=(1, -1, 2, 0), flip_filter=True, gain=2.0)
    torch.testing.assert_close(U._upfirdn2d_naive(x, f, **kw), _ref(x, f, **kw), rtol=1e-12, atol=1e-12)


def test_wrappers_keep_dc_and_sizes():
    f = U.setup_filter([1, 3, 3, 1])
    x = torch.ones([1, 1, 8, 8], dtype=torch.float64)
    up = U.upsample2d(x, f, impl='ref')
    down = U.downsample2d(x, f, impl='ref')
    filt = U.filter2d(x, f, impl='ref')
    assert up.shape == (1, 1, 16, 16) and down.shape == (1, 1, 4, 4) and filt.shape == (1, 1, 8, 8)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.ones_like(up[..., 2:-2, 2:-2]))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.ones_like(down[..., 1:-1, 1:-1]))
    torch.testing.assert_close(filt[..., 2:-2, 2:-2], torch.ones_like(filt[..., 2:-2, 2:-2]))
    # A single pixel upsampled with [1,3,3,1]: 3/4 per axis in each of the 2x2 outputs.
    delta = torch.ones([1, 1, 1, 1], dtype=torch.float64)
    torch.testing.assert_close(U.upsample2d(delta, f, impl='ref'), torch.full([1, 1, 2, 2], 9 / 16, dtype=torch.float64))
    # Wrapper paddings against the definition, with extra user padding and odd up.
    x = torch.randn([1, 2, 5, 4], dtype=torch.float64)
    torch.testing.assert_close(U.upsample2d(x, f, up=(3, 2), padding=(1, 0, 0, 1), impl='ref'),
                               _ref(x, f, up=(3, 2), padding=[1 + 3, 0 + 0, 0 + 2, 1 + 1], gain=6))
    torch.testing.assert_close(U.downsample2d(x, f, padding=(0, 1), impl='ref'), _ref(x, f, down=2, padding=[1, 1, 2, 2]))
    torch.testing.assert_close(U.filter2d(x, f, padding=(-1, 1), impl='ref'), _ref(x, f, padding=[1, 0, 3, 2]))


def test_setup_filter():
    torch.testing.assert_close(U.setup_filter([1, 3, 3, 1]), torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    f8 = U.setup_filter([1] * 8)
    assert f8.ndim == 1 and f8.dtype == torch.float32
    torch.testing.assert_close(f8, torch.full([8], 1 / 8))
    torch.testing.assert_close(U.setup_filter([1, 2], gain=4, normalize=False, flip_filter=True), torch.tensor([[16., 8.], [8., 4.]]))
    torch.testing.assert_close(U.setup_filter([1, 2, 3], separable=True, gain=4), torch.tensor([1., 2., 3.]) / 6 * 2)
    torch.testing.assert_close(U.setup_filter(None), torch.ones([1, 1]))
    torch.testing.assert_close(U.setup_filter(2.0), torch.ones([1, 1]))
    user = torch.tensor([1.0, 1.0])
    U.setup_filter(user)
    assert user.tolist() == [1.0, 1.0]  # caller's tensor untouched
    with pytest.raises(ValueError, match='separable=True needs a 1-D filter'):
        U.setup_filter([[1, 2], [3, 4]], separable=True)
    with pytest.raises(ValueError, match='must not be empty'):
        U.setup_filter([])
    with pytest.raises(ValueError, match='0, 1 or 2 dimensions'):
        U.setup_filter(np.ones([2, 2, 2]))

#----------------------------------------------------------------------------
# dtypes, layouts, gradients.

@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize('kw', [dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=1), dict(up=2, down=2, padding=1)])
def test_dtypes(dtype, tol, kw):
    f = FILTERS['2d4']
    x = torch.randn([2, 3, 8, 9])
    y = U.upfirdn2d(x.to(dtype), f, impl='ref', **kw)
    assert y.dtype == dtype
    ref = _ref(x.to(dtype), f, **kw)
    torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol * 4)


@pytest.mark.parametrize('fname', ['sep4', '2d4', 'none'])
def test_channels_last(fname):
    f = FILTERS[fname]
    x = torch.randn([2, 4, 6, 7])
    xc = x.contiguous(memory_format=torch.channels_last)
    for kw in [dict(up=2, padding=1), dict(down=2), dict(padding=(1, -1, 0, 2))]:
        y = U.upfirdn2d(xc, f, impl='ref', **kw)
        assert y.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(y, U.upfirdn2d(x, f, impl='ref', **kw))
    assert U.upfirdn2d(x, f, up=2, impl='ref').is_contiguous()


def test_non_contiguous_input():
    x = torch.randn([2, 3, 9, 12], dtype=torch.float64)[:, :, ::2, 1::3]
    f = FILTERS['2d3x2']
    torch.testing.assert_close(U.upfirdn2d(x, f, up=2, padding=1, impl='ref'), _ref(x, f, up=2, padding=1))


@pytest.mark.parametrize('kw', [
    dict(up=2, padding=[2, 1, 2, 1], gain=4),
    dict(down=2, padding=1),
    dict(up=(2, 3), down=(3, 2), padding=(1, -1, 2, 0), flip_filter=True),
    dict(padding=(-1, 2)),
])
@pytest.mark.parametrize('fname', ['sep3', '2d3x2'])
def test_gradcheck(kw, fname):
    f = FILTERS[fname].double()
    x = torch.randn([1, 2, 4, 5], dtype=torch.float64, requires_grad=True)
    fn = lambda t: U.upfirdn2d(t, f, impl='ref', **kw)
    assert torch.autograd.gradcheck(fn, [x], fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, [x], fast_mode=True)

#----------------------------------------------------------------------------
# Errors and dispatch.

def test_errors():
    x = torch.randn([1, 2, 4, 4])
    f = FILTERS['2d4']
    with pytest.raises(ValueError, match=r'x: expected a 4-D tensor, got 3-D'):
        U.upfirdn2d(x[0], f)
    with pytest.raises(ValueError, match='padding: expected an int, a pair'):
        U.upfirdn2d(x, f, padding=(1, 2, 3))
    with pytest.raises(ValueError, match='padding: expected an int, a pair'):
        U.upfirdn2d(x, f, padding=1.5)
    with pytest.raises(ValueError, match='up: factors must be >= 1'):
        U.upfirdn2d(x, f, up=0)
    with pytest.raises(ValueError, match='down: factors must be >= 1'):
        U.upfirdn2d(x, f, down=(1, 0))
    with pytest.raises(ValueError, match='down: expected an int or a pair'):
        U.upfirdn2d(x, f, down=(1, 2, 3))
    with pytest.raises(ValueError, match='f: expected a 1-D .separable. or 2-D filter'):
        U.upfirdn2d(x, torch.ones([2, 2, 2]))
    with pytest.raises(ValueError, match=r'smaller than the filter \(4x4\)'):
        U.upfirdn2d(x, f, padding=-1)
    with pytest.raises(ValueError, match='impl must be one of'):
        U.upfirdn2d(x, f, impl='fast')
    with pytest.raises(ValueError, match="impl='cuda' needs CUDA tensors"):
        U.upfirdn2d(x, f, impl='cuda')
    with pytest.raises(ValueError, match='up: factors must be >= 1'):
        U.upsample2d(x, f, up=0)
