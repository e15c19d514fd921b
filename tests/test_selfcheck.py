"""CPU tests of the first-use self-check of the CUDA ops (ops/_selfcheck.py, ops/_impl.resolve).

The compiled extensions are replaced by Python stand-ins (correct ones from the CUDA wiring tests,
and deliberately wrong ones) and CPU tensors are treated as if they lived on a GPU, so the whole
decision path runs here: the check, the fallback with its warning, the on-disk verdict, the error.
"""

import json
import os
import warnings

import numpy as np
import pytest
import torch

from ops import _build, _impl, _selfcheck
from ops.filtered_lrelu import filtered_lrelu
from tests.test_cuda_ops import _fake_bias_act, _fake_modulate, _fake_upfirdn2d
from tests.test_filtered_lrelu import fake_kernel


def _wrong_filtered_lrelu(*args):
    y, classes = fake_kernel(*args)
    y = y.clone()
    y[..., 0, 0] += 0.5  # an indexing slip at the tile corner
    return y, classes


class FakeLib:
    """A loaded 'extension' whose operators are Python functions; counts the filtered_lrelu calls."""

    def __init__(self, filtered_lrelu_fn):
        self.calls = 0
        self.namespace = 'ganforge_fake_0123456789abcdef'
        self.path = '/fake/lib.so'
        self._fn = filtered_lrelu_fn
        self.bias_act, self.upfirdn2d, self.modulate = _fake_bias_act, _fake_upfirdn2d, _fake_modulate

    def filtered_lrelu(self, *args):
        self.calls += 1
        return self._fn(*args)


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """CPU tensors count as CUDA tensors; verdicts go to tmp_path; returns a function installing a fake library."""
    monkeypatch.setenv('GANFORGE_EXTENSIONS_DIR', str(tmp_path))
    monkeypatch.delenv('GANFORGE_OPS', raising=False)
    monkeypatch.setattr(_impl, 'on_cuda', lambda x: True)
    monkeypatch.setattr(_impl, '_warned', set())
    monkeypatch.setattr(_selfcheck, '_verdicts', {})

    def install(fn):
        lib = FakeLib(fn)
        monkeypatch.setattr(_build, 'load_op', lambda name, verbose=True: lib)
        return lib
    return install


def _layer(impl, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 12, 12, generator=g).to(dtype)
    fu, fd = torch.rand(8, generator=g) + 0.2, torch.rand(6, generator=g) + 0.2
    return filtered_lrelu(x, fu / fu.sum(), fd / fd.sum(), torch.randn(3, generator=g), up=2, down=2, padding=[4, 3, 4, 3], clamp=4.0,
                          impl=impl)


def test_wrong_kernel_falls_back_with_one_warning_and_caches_the_verdict(fake_gpu, tmp_path):
    lib = fake_gpu(_wrong_filtered_lrelu)
    with pytest.warns(RuntimeWarning, match=r'filtered_lrelu: the CUDA kernel disagrees with the reference on cpu \(torch.float32\): '
                                            r'fd \[6\] up=2 down=2 forward: error .* using the slower reference'):
        y = _layer('auto')
    assert lib.calls > 0
    torch.testing.assert_close(y, _layer('ref'), rtol=0, atol=0)  # the reference's numbers
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # warned once per op, device and dtype
        _layer('auto')
    files = os.listdir(tmp_path / 'selfcheck')
    assert len(files) == 1 and files[0].startswith('filtered_lrelu-float32-cpu-')
    data = json.loads((tmp_path / 'selfcheck' / files[0]).read_text())
    assert data['ok'] is False and 'forward: error' in data['error'] and data['device'] == 'cpu'

    # A new process reads the verdict from disk instead of checking again.
    _selfcheck._verdicts.clear()
    _impl._warned.clear()
    calls = lib.calls
    with pytest.warns(RuntimeWarning, match='disagrees with the reference'):
        _layer('auto')
    assert lib.calls == calls


def test_wrong_kernel_raises_for_impl_cuda(fake_gpu):
    fake_gpu(_wrong_filtered_lrelu)
    with pytest.raises(_selfcheck.SelfCheckError, match=r"filtered_lrelu: the CUDA kernel disagrees with the reference on cpu "
                                                         r"\(torch.float32\): fd \[6\] up=2 down=2 forward: error .*Use impl='ref'"):
        _layer('cuda')


def test_failing_launch_is_a_failed_verdict(fake_gpu):
    def broken(*args):
        raise RuntimeError('CUDA error: no kernel image is available for execution on the device')
    fake_gpu(broken)
    assert _selfcheck.verdict('filtered_lrelu', 'cpu', torch.float32) == \
        'RuntimeError: CUDA error: no kernel image is available for execution on the device'


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_correct_kernels_pass_and_are_used(fake_gpu, dtype):
    lib = fake_gpu(fake_kernel)
    for op in _selfcheck.CASES:
        assert _selfcheck.verdict(op, 'cpu', dtype) is None, op
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        calls = lib.calls
        _layer('auto', dtype)
        assert lib.calls == calls + 1  # the (stand-in) kernel ran, no second check
    assert _impl.resolve('bias_act', 'auto', torch.ones(1, dtype=dtype)) == 'cuda'


def test_each_dtype_is_checked_separately(fake_gpu):
    fake_gpu(fake_kernel)
    _selfcheck.verdict('filtered_lrelu', 'cpu', torch.float32)
    _selfcheck.verdict('filtered_lrelu', 'cpu', torch.float64)
    assert set(_selfcheck._verdicts) == {('filtered_lrelu', 'cpu', torch.float32), ('filtered_lrelu', 'cpu', torch.float64)}
    assert len(os.listdir(os.path.join(os.environ['GANFORGE_EXTENSIONS_DIR'], 'selfcheck'))) == 2


def test_error_measure():
    want = torch.tensor([0.0, 1.0, -3.0])
    assert _selfcheck._error(want.clone(), want) == 0
    assert np.isclose(_selfcheck._error(want + torch.tensor([0.0, 0.2, 0.0]), want), 0.1)
    assert _selfcheck._error(torch.tensor([0.0, float('nan'), 0.0]), want) == float('inf')
    assert _selfcheck._error(want[:2], want) == float('inf')
