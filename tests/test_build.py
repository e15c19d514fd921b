"""`build` tests: compile and load every CUDA extension with the real toolchain (nvcc, ninja, a
C++ compiler and a CUDA build of PyTorch; no GPU needed). Skipped with the reason where the
toolchain is missing. Cold, the three builds take about 1-2 minutes on 2 cores; cached builds
(same sources, versions and archs) load instantly.
"""

import pytest
import torch

from ops import _build


@pytest.fixture(scope='module')
def toolchain():
    try:
        return _build.check_toolchain('build test')
    except _build.BuildError as e:
        pytest.skip(f'cannot build CUDA extensions here: {e}')


@pytest.mark.build
@pytest.mark.parametrize('name,op,args', [
    ('bias_act', 'bias_act', (None, None, None, 1, 3, 0, 0.2, 1.0, -1.0)),
    ('upfirdn2d', 'upfirdn2d', (torch.ones(4), 2, 2, 1, 1, 1, 1, 1, 1, False, 1.0)),
    ('modconv', 'modulate', (torch.ones(2, 4), True, True)),
])
def test_extension_builds_and_loads(toolchain, name, op, args):
    lib = _build.load_op(name)
    assert lib.namespace == f'ganforge_{name}_{_build.source_hash(name)}'
    assert _build.load_op(name) is lib  # cached per process
    kernel = getattr(lib, op)
    # The operator is registered and its C++ argument checks run (CPU tensors are refused by name).
    x = torch.ones(2, 4, 3, 3)
    first = 'weight' if name == 'modconv' else 'x'
    with pytest.raises(RuntimeError, match=f'{op}: {first} must be a CUDA tensor, got device cpu'):
        kernel(x, *args)
