"""Choice between the reference and the CUDA implementation of an op (`impl=` argument)."""

import os
import warnings

IMPLS = ('auto', 'cuda', 'ref')
_warned = set()  # ops whose fallback warning was already shown in this process


def env_impl():
    """The process-wide default from GANFORGE_OPS ('auto' when unset)."""
    value = os.environ.get('GANFORGE_OPS', 'auto').strip().lower() or 'auto'
    if value not in IMPLS:
        raise ValueError(f'GANFORGE_OPS={value!r} is invalid: use one of {", ".join(IMPLS)}')
    return value


def resolve(op, impl, x):
    """Return 'ref' or 'cuda' for running `op` on tensor `x` with the requested `impl`.

    'ref' always runs the reference. 'cuda' requires a CUDA tensor and a working extension and
    raises otherwise. 'auto' (the default; GANFORGE_OPS overrides it) uses the extension for CUDA
    tensors when it builds, and otherwise the reference, warning once per op with the reason.
    """
    if impl not in IMPLS:
        raise ValueError(f'{op}: impl must be one of {", ".join(repr(v) for v in IMPLS)}, got {impl!r}')
    if impl == 'auto':
        impl = env_impl()
    if impl == 'ref':
        return 'ref'
    if impl == 'cuda':
        if x.device.type != 'cuda':
            raise ValueError(f"{op}: impl='cuda' needs CUDA tensors, got a tensor on {x.device}; use impl='ref' or 'auto' on CPU")
        from . import _build
        _build.load_op(op)  # raises _build.BuildError naming what is missing
        return 'cuda'
    # auto
    if x.device.type != 'cuda':
        return 'ref'
    from . import _build
    try:
        _build.load_op(op)
    except _build.BuildError as e:
        if op not in _warned:
            _warned.add(op)
            warnings.warn(f'{op}: CUDA extension unavailable, using the slower reference implementation. {e}', RuntimeWarning, stacklevel=3)
        return 'ref'
    return 'cuda'
