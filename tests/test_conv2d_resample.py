"""conv2d_resample: every schedule (1x1 fast paths, strided, transposed, plain, generic) against
the explicit numpy composition upsample -> conv -> downsample; gradients, dtypes, errors."""

import pytest
import torch

from ops import upfirdn2d as U
from ops.conv2d_resample import conv2d_resample
from tests.ops_reference import conv2d_resample_np

F4 = U.setup_filter([1, 3, 3, 1]).double()
F3 = U.setup_filter([1, 2, 1], separable=True).double()

CASES = [
    # k, up, down, groups, padding, f
    (3, 1, 1, 1, 1, F4),              # plain conv2d
    (3, 1, 1, 2, (1, 0, 2, 1), F4),   # generic (asymmetric padding)
    (3, 1, 1, 1, -1, F4),             # generic (negative padding)
    (1, 1, 2, 1, 0, F4),              # 1x1 downsample first
    (1, 2, 1, 2, 0, F4),              # 1x1 upsample after
    (3, 1, 2, 1, 1, F4),              # filter + strided conv
    (3, 1, 2, 2, (0, 1), F3),
    (3, 2, 1, 1, 1, F4),              # transposed conv + filter
    (3, 2, 1, 2, (1, 0), F4),         # transposed, grouped
    (2, 2, 1, 1, (0, 1, 1, 0), F3),   # even kernel
    (3, 2, 2, 1, 1, F4),              # up and down
    (3, 4, 1, 1, 1, F4),
    (1, 2, 2, 1, 0, None),
    (3, 2, 1, 1, 1, None),
]


@pytest.mark.parametrize('k,up,down,groups,padding,f', CASES)
@pytest.mark.parametrize('flip_weight,flip_filter', [(True, False), (False, True)])
def test_matches_explicit_composition(k, up, down, groups, padding, f, flip_weight, flip_filter):
    x = torch.randn([2, 4, 7, 6], dtype=torch.float64)
    w = torch.randn([6, 4 // groups, k, k], dtype=torch.float64)
    y = conv2d_resample(x, w, f=f, up=up, down=down, padding=padding, groups=groups,
                        flip_weight=flip_weight, flip_filter=flip_filter, impl='ref')
    ref = conv2d_resample_np(x.numpy(), w.numpy(), None if f is None else f.numpy(), up=up, down=down, padding=padding,
                             groups=groups, flip_weight=flip_weight, flip_filter=flip_filter)
    assert tuple(y.shape) == ref.shape
    torch.testing.assert_close(y, torch.from_numpy(ref), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('k,up,down,groups,padding', [(3, 2, 1, 1, 1), (3, 1, 2, 1, 1), (1, 2, 1, 1, 0), (3, 1, 1, 2, (1, 0, 2, 1))])
def test_gradcheck(k, up, down, groups, padding):
    x = torch.randn([1, 2, 4, 4], dtype=torch.float64, requires_grad=True)
    w = torch.randn([2, 2 // groups, k, k], dtype=torch.float64, requires_grad=True)
    fn = lambda x, w: conv2d_resample(x, w, f=F4, up=up, down=down, padding=padding, groups=groups, impl='ref')
    assert torch.autograd.gradcheck(fn, [x, w], fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, [x, w], fast_mode=True)


@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-4), (torch.float16, 1e-2), (torch.bfloat16, 8e-2)])
@pytest.mark.parametrize('up,down', [(2, 1), (1, 2), (1, 1)])
def test_dtypes_and_channels_last(dtype, tol, up, down):
    x = torch.randn([2, 4, 8, 8])
    w = torch.randn([3, 4, 3, 3]) / 6
    f = U.setup_filter([1, 3, 3, 1])
    ref = conv2d_resample(x.double(), w.double(), f=f, up=up, down=down, padding=1, impl='ref')
    y = conv2d_resample(x.to(dtype), w.to(dtype), f=f, up=up, down=down, padding=1, impl='ref')
    assert y.dtype == dtype
    torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol)
    xc = x.to(dtype).contiguous(memory_format=torch.channels_last)
    yc = conv2d_resample(xc, w.to(dtype), f=f, up=up, down=down, padding=1, impl='ref')
    assert yc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(yc.double(), ref, rtol=tol, atol=tol)


def test_errors():
    x = torch.randn([1, 4, 6, 6])
    w = torch.randn([2, 4, 3, 3])
    with pytest.raises(ValueError, match='w: dtype torch.float64 differs from x dtype torch.float32'):
        conv2d_resample(x, w.double())
    with pytest.raises(ValueError, match='x: expected a 4-D tensor, got 3-D'):
        conv2d_resample(x[0], w)
    with pytest.raises(ValueError, match='w: expected a 4-D tensor'):
        conv2d_resample(x, w[0])
    with pytest.raises(ValueError, match='up: expected an int >= 1, got 0'):
        conv2d_resample(x, w, up=0)
    with pytest.raises(ValueError, match=r'down: expected an int >= 1, got \(2, 2\)'):
        conv2d_resample(x, w, down=(2, 2))
    with pytest.raises(ValueError, match=r'w: shape \[2, 4, 3, 3\] does not fit x with 4 channels and groups=2'):
        conv2d_resample(x, w, groups=2)
    with pytest.raises(ValueError, match='padding: expected an int'):
        conv2d_resample(x, w, padding=(1, 2, 3))
    with pytest.raises(ValueError, match='f: expected a 1-D'):
        conv2d_resample(x, w, f=torch.ones([1, 2, 2]), up=2)
