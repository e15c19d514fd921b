"""Choice between the reference and the CUDA implementation of an op (`impl=` argument)."""

import os
import warnings

IMPLS = ('auto', 'cuda', 'ref')
_warned = set()  # (op, reason) whose fallback warning was already shown in this process


def on_cuda(x):
    """Whether tensor x lives on a CUDA device (the CPU tests of the self-check replace this)."""
    return x.device.type == 'cuda'


def env_impl():
    """The process-wide default from GANFORGE_OPS ('auto' when unset)."""
    value = os.environ.get('GANFORGE_OPS', 'auto').strip().lower() or 'auto'
    if value not in IMPLS:
        raise ValueError(f'GANFORGE_OPS={value!r} is invalid: use one of {", ".join(IMPLS)}')
    return value


def resolve(op, impl, x):
    """Return 'ref' or 'cuda' for running `op` on tensor `x` with the requested `impl`.

    'ref' always runs the reference. 'cuda' requires a CUDA tensor and a working extension that
    passes its first-use self-check on x's device and dtype (`ops._selfcheck`), and raises
    otherwise. 'auto' (the default; GANFORGE_OPS overrides it) uses the extension for CUDA tensors
    when it builds and passes the self-check, and otherwise the reference, warning once per op
    with the reason.
    """
    if impl not in IMPLS:
        raise ValueError(f'{op}: impl must be one of {", ".join(repr(v) for v in IMPLS)}, got {impl!r}')
    if impl == 'auto':
        impl = env_impl()
    if impl == 'ref':
        return 'ref'
    from . import _build, _selfcheck
    if impl == 'cuda':
        if not on_cuda(x):
            raise ValueError(f"{op}: impl='cuda' needs CUDA tensors, got a tensor on {x.device}; use impl='ref' or 'auto' on CPU")
        _build.load_op(op)  # raises _build.BuildError naming what is missing
        error = _selfcheck.verdict(op, x.device, x.dtype)
        if error is not None:
            raise _selfcheck.SelfCheckError(f'{op}: the CUDA kernel disagrees with the reference on {_selfcheck.device_name(x.device)} '
                                            f'({x.dtype}): {error}. Use impl=\'ref\' (or \'auto\', which falls back to it).')
        return 'cuda'
    # auto
    if not on_cuda(x):
        return 'ref'
    try:
        _build.load_op(op)
    except _build.BuildError as e:
        _warn_once(op, 'build', f'{op}: CUDA extension unavailable, using the slower reference implementation. {e}')
        return 'ref'
    error = _selfcheck.verdict(op, x.device, x.dtype)
    if error is not None:
        _warn_once(op, f'selfcheck {x.device} {x.dtype}',
                   f'{op}: the CUDA kernel disagrees with the reference on {_selfcheck.device_name(x.device)} ({x.dtype}): {error}; '
                   'using the slower reference implementation.')
        return 'ref'
    return 'cuda'


def _warn_once(op, reason, message):
    if (op, reason) not in _warned:
        _warned.add((op, reason))
        warnings.warn(message, RuntimeWarning, stacklevel=4)
