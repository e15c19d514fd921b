"""First-use self-check of the CUDA ops against their references.

The first time an op runs with the CUDA implementation on a device and dtype in a process, it is
compared with the reference on a few small random cases, forward and backward. The verdict is
kept for the process and on disk (next to the JIT builds, in `<extensions dir>/selfcheck/`), keyed
by the built library (its namespace carries the source hash; its path the build hash), the
device's name and capability, and the dtype, so a machine checks each build once. A mismatch, a
non-finite value or an exception is a failed verdict naming the case and the error; `ops._impl.
resolve` then falls back to the reference with a warning (impl='auto') or raises (impl='cuda').
"""

import hashlib
import json
import os
import re
import threading
import time

import torch

from . import _build

# Largest error max|got - want| / (1 + |want|) accepted, by dtype (the reference runs in float64
# on the same inputs; the 16-bit kernels round their output and the gradients they feed).
TOLERANCE = {torch.float32: 1e-3, torch.float16: 2e-2, torch.bfloat16: 1e-1, torch.float64: 1e-7}

_verdicts = {}  # (op, device, dtype) -> None (passed) or the error message, per process
_MISSING = object()
_lock = threading.Lock()


class SelfCheckError(RuntimeError):
    """A CUDA op disagrees with its reference on this device (raised for impl='cuda')."""


def device_name(device):
    device = torch.device(device)
    if device.type != 'cuda':
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return f'{torch.cuda.get_device_name(index)} (sm_{major}{minor})'


def cache_path(op, device, dtype):
    """File holding the verdict for op's current build on `device` with `dtype`."""
    lib = _build.load_op(op)
    ident = repr((op, getattr(lib, 'namespace', ''), getattr(lib, 'path', ''), device_name(device), str(dtype), torch.__version__))
    key = hashlib.sha256(ident.encode()).hexdigest()[:16]
    slug = re.sub(r'[^A-Za-z0-9]+', '_', device_name(device)).strip('_')[:40]
    return os.path.join(_build.extensions_root(), 'selfcheck', f'{op}-{str(dtype).replace("torch.", "")}-{slug}-{key}.json')


def verdict(op, device, dtype):
    """None if op's CUDA implementation matches the reference on `device` with `dtype`, else the error message."""
    device = torch.device(device)
    key = (op, str(device), dtype)
    known = _verdicts.get(key, _MISSING)  # every op call comes here: no lock once decided
    if known is not _MISSING:
        return known
    with _lock:
        if key in _verdicts:
            return _verdicts[key]
        path = cache_path(op, device, dtype)
        cached = _read(path)
        if cached is not _MISSING:
            result = cached
        else:
            result = run_check(op, device, dtype)
            _write(path, op, device, dtype, result)
        _verdicts[key] = result
        return result


def _read(path):
    """The cached verdict (None for passed, else the message), or _MISSING when there is none."""
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError):
        return _MISSING
    if not isinstance(data, dict) or not isinstance(data.get('ok'), bool):
        return _MISSING
    return None if data['ok'] else str(data.get('error') or 'failed')


def _write(path, op, device, dtype, result):
    from dnnlib import util
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = dict(op=op, device=device_name(device), dtype=str(dtype), ok=result is None, error=result, torch=torch.__version__,
                time=time.strftime('%Y-%m-%dT%H:%M:%S'))
    try:
        with util.atomic_write(path, 'w') as f:
            json.dump(data, f, indent=1)
    except OSError:
        pass  # an unwritable cache only means checking again in the next process


def run_check(op, device, dtype):
    """Run the op's check cases; None if all agree, else a message naming the first failing case."""
    try:
        with torch.inference_mode(False), torch.enable_grad():
            results = list(CASES[op](torch.device(device), dtype))
        for name, got, want in results:
            err = _error(got, want)
            if not err <= TOLERANCE[dtype]:
                return f'{name}: error {err:.3g} > {TOLERANCE[dtype]:.3g} (max |cuda - ref| / (1 + |ref|))'
    except Exception as e:  # a kernel that fails to launch is a failed check, not a crash of the caller
        return f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
    return None


def _error(got, want):
    if got is None or want is None:
        return 0.0 if got is None and want is None else float('inf')
    if tuple(got.shape) != tuple(want.shape):
        return float('inf')
    got, want = got.detach().double(), want.detach().double()
    if not torch.isfinite(got).all():
        return float('inf')
    return ((got - want).abs() / (1 + want.abs())).max().item() if got.numel() else 0.0

# ----------------------------------------------------------------------------
# Cases: each yields (name, cuda result, float64 reference result) for forward and backward.


def _rand(gen, shape, dtype, device, scale=1.0):
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(device=device, dtype=dtype)


def _grads(fn, inputs, dy):
    """Gradients of sum(fn(*inputs) * dy) with respect to inputs (fresh leaves)."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(True) for t in inputs]
        y = fn(*leaves)
        return y.detach(), torch.autograd.grad(y, leaves, dy.to(y.dtype))


def _compare(name, cuda_fn, ref_fn, inputs, dy):
    y, gs = _grads(cuda_fn, inputs, dy)
    y64, gs64 = _grads(ref_fn, [t.double() for t in inputs], dy.double())
    yield f'{name} forward', y, y64
    for i, (g, g64) in enumerate(zip(gs, gs64)):
        yield f'{name} gradient {i}', g, g64


def _check_bias_act(device, dtype):
    from . import _cuda_bias_act
    from .bias_act import _bias_act_ref
    gen = torch.Generator().manual_seed(1)
    x, b = _rand(gen, [2, 5, 6, 7], dtype, device, 2), _rand(gen, [5], dtype, device)
    dy = _rand(gen, [2, 5, 6, 7], torch.float64, device)
    for act, alpha, gain, clamp in (('lrelu', 0.2, 2 ** 0.5, 1.5), ('linear', 0.0, 1.0, None), ('tanh', 0.0, 1.3, None)):
        yield from _compare(f'{act} clamp={clamp}', lambda x, b: _cuda_bias_act.bias_act(x, b, 1, act, alpha, gain, clamp),
                            lambda x, b: _bias_act_ref(x, b, 1, act, alpha, gain, clamp), [x, b], dy)


def _check_upfirdn2d(device, dtype):
    from . import _cuda_upfirdn2d
    from .upfirdn2d import _upfirdn2d_ref
    gen = torch.Generator().manual_seed(2)
    x = _rand(gen, [2, 3, 9, 10], dtype, device)
    for f, up, down, pad in ((torch.tensor([1., 3., 3., 1.]) / 8, 2, 1, (2, 1, 2, 1)), (torch.tensor([1., 3., 3., 1.]) / 8, 1, 2, (1, 1, 1, 1)),
                             (torch.rand(3, 5, generator=gen), 2, 3, (1, 2, 0, 3))):
        f = f.to(device)
        args = (up, up, down, down, *pad, False, float(up * up))
        out = _upfirdn2d_ref(x.double(), f.double(), *args)
        dy = _rand(gen, out.shape, torch.float64, device)
        yield from _compare(f'{list(f.shape)} up={up} down={down}', lambda x: _cuda_upfirdn2d.upfirdn2d(x, f.float(), *args),
                            lambda x: _upfirdn2d_ref(x, f.double(), *args), [x], dy)


def _check_modconv(device, dtype):
    from . import _cuda_modconv
    from .modconv import _modulate_ref
    gen = torch.Generator().manual_seed(3)
    weight, styles = _rand(gen, [6, 5, 3, 3], dtype, device, 0.2), _rand(gen, [2, 5], dtype, device)
    dy = _rand(gen, [2, 6, 5, 3, 3], torch.float64, device)
    yield from _compare('modulate+demodulate', lambda w, s: _cuda_modconv.modulate(w, s, True, True)[0],
                        lambda w, s: _modulate_ref(w, s, True, True)[0], [weight, styles], dy)
    dd = _rand(gen, [2, 6], torch.float64, device)
    yield from _compare('demodulation coefficients', lambda w, s: _cuda_modconv.modulate(w, s, True, False)[1],
                        lambda w, s: _modulate_ref(w, s, True, False)[1], [weight, styles], dd)


def _check_filtered_lrelu(device, dtype):
    from . import _cuda_filtered_lrelu
    from .filtered_lrelu import _filtered_lrelu_ref
    gen = torch.Generator().manual_seed(4)
    x, b = _rand(gen, [2, 3, 10, 11], dtype, device, 2), _rand(gen, [3], dtype, device)
    for fu, fd, up, down, pad in ((torch.rand(8, generator=gen), torch.rand(6, generator=gen), 2, 2, (4, 3, 3, 4)),
                                  (torch.rand(8, generator=gen), torch.rand(4, 4, generator=gen), 4, 2, (-3, -4, -2, -5))):
        fu, fd = (fu / fu.sum()).to(device), (fd / fd.sum()).to(device)
        args = (up, down, *pad, 2 ** 0.5, 0.2, 1.5, False)
        out = _filtered_lrelu_ref(x.double(), fu.double(), fd.double(), b.double(), *args)
        dy = _rand(gen, out.shape, torch.float64, device)
        yield from _compare(f'fd {list(fd.shape)} up={up} down={down}', lambda x, b: _cuda_filtered_lrelu.filtered_lrelu(x, fu, fd, b, *args),
                            lambda x, b: _filtered_lrelu_ref(x, fu.double(), fd.double(), b, *args), [x, b], dy)


CASES = {'bias_act': _check_bias_act, 'upfirdn2d': _check_upfirdn2d, 'modconv': _check_modconv, 'filtered_lrelu': _check_filtered_lrelu}
