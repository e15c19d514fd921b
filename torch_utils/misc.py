"""Small torch helpers used across ops, networks and the training loop."""

import contextlib
import re
import warnings

import numpy as np
import torch

#----------------------------------------------------------------------------
# Cached constant tensors: avoids re-uploading the same small tensor (filters, gains) every call.

_constant_cache = dict()

def constant(value, shape=None, dtype=None, device=None, memory_format=None):
    """Return a cached constant tensor built from `value` (scalar, list or ndarray), broadcast to `shape`."""
    value = np.asarray(value)
    if shape is not None:
        shape = tuple(shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device('cpu')
    if memory_format is None:
        memory_format = torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key, None)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor, _ = torch.broadcast_tensors(tensor, torch.empty(shape))
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor

#----------------------------------------------------------------------------
# Shape assertions that name the tensor.

def assert_shape(tensor, ref_shape, name='tensor'):
    """Raise ValueError unless `tensor.shape` matches `ref_shape` (None entries match any size).

    The message names the tensor and shows the shape it got and the shape expected, e.g.
    "x: expected shape [N, 512], got [4, 256]".
    """
    shape = tuple(tensor.shape)
    fmt = lambda s: '[' + ', '.join('*' if v is None else str(int(v)) for v in s) + ']'
    if len(shape) != len(ref_shape):
        raise ValueError(f'{name}: expected {len(ref_shape)}-D tensor of shape {fmt(ref_shape)}, got {len(shape)}-D {fmt(shape)}')
    for size, ref_size in zip(shape, ref_shape):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor):
            ref_size = int(ref_size)
        if size != ref_size:
            raise ValueError(f'{name}: expected shape {fmt(ref_shape)}, got {fmt(shape)}')


def assert_rank(tensor, ndim, name='tensor'):
    """Raise ValueError unless `tensor` has `ndim` dimensions."""
    if tensor.ndim != ndim:
        raise ValueError(f'{name}: expected a {ndim}-D tensor, got {tensor.ndim}-D with shape {list(tensor.shape)}')

#----------------------------------------------------------------------------
# Parameters and buffers.

def named_params_and_buffers(module):
    assert isinstance(module, torch.nn.Module)
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(src_module, dst_module, require_all=False):
    """Copy same-named parameters and buffers from `src_module` into `dst_module` (shapes must match)."""
    assert isinstance(src_module, torch.nn.Module) and isinstance(dst_module, torch.nn.Module)
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name not in src_tensors:
            if require_all:
                raise KeyError(f'copy_params_and_buffers(): source has no tensor named {name!r}')
            continue
        src = src_tensors[name]
        if src.shape != tensor.shape:
            raise ValueError(f'copy_params_and_buffers(): {name}: source shape {list(src.shape)} != destination shape {list(tensor.shape)}')
        tensor.copy_(src.detach())


#----------------------------------------------------------------------------
# DDP helpers.

def check_ddp_consistency(module, ignore_regex=None):
    """Assert that every parameter and buffer equals rank 0's copy (NaNs compare equal)."""
    assert isinstance(module, torch.nn.Module)
    for name, tensor in named_params_and_buffers(module):
        fullname = type(module).__name__ + '.' + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, fullname):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = torch.nan_to_num(tensor)
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        if not (tensor == other).all():
            raise RuntimeError(f'DDP consistency check failed: {fullname} differs from rank 0')

#----------------------------------------------------------------------------
# Misc.

@contextlib.contextmanager
def suppress_tracer_warnings():
    """Silence TracerWarnings (shape asserts inside torch.jit.trace)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', category=torch.jit.TracerWarning)
        yield


def print_module_summary(module, inputs, max_nesting=3, skip_redundant=True):
    """Run `module(*inputs)` once and print a table of submodules with parameter/buffer counts and output shapes."""
    assert isinstance(module, torch.nn.Module) and not isinstance(module, torch.jit.ScriptModule)
    assert isinstance(inputs, (tuple, list))

    entries = []
    nesting = [0]
    def pre_hook(_mod, _inputs):
        nesting[0] += 1
    def post_hook(mod, _inputs, outputs):
        nesting[0] -= 1
        if nesting[0] <= max_nesting:
            outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
            entries.append((mod, [t for t in outputs if isinstance(t, torch.Tensor)]))
    hooks = [m.register_forward_pre_hook(pre_hook) for m in module.modules()]
    hooks += [m.register_forward_hook(post_hook) for m in module.modules()]
    try:
        outputs = module(*inputs)
    finally:
        for h in hooks:
            h.remove()

    # Count each tensor once, at the first (innermost) module that owns it.
    seen = set()
    rows = [['Name', 'Parameters', 'Buffers', 'Output shape', 'Datatype'], ['---'] * 5]
    names = {mod: name for name, mod in module.named_modules()}
    total_params = total_buffers = 0
    for mod, outs in entries:
        params = [t for t in mod.parameters() if id(t) not in seen]
        buffers = [t for t in mod.buffers() if id(t) not in seen]
        seen.update(id(t) for t in params + buffers)
        if skip_redundant and mod is not module and not params and not buffers and len(outs) == 0:
            continue
        n_p = sum(t.numel() for t in params)
        n_b = sum(t.numel() for t in buffers)
        total_params += n_p
        total_buffers += n_b
        name = '<top-level>' if mod is module else names.get(mod, '?')
        shapes = [str(list(t.shape)) for t in outs] or ['-']
        dtypes = [str(t.dtype).split('.')[-1] for t in outs] or ['-']
        for i, (shape, dt) in enumerate(zip(shapes, dtypes)):
            rows.append([name + (f':{i}' if len(outs) > 1 else ''),
                         str(n_p) if i == 0 and n_p else '-', str(n_b) if i == 0 and n_b else '-', shape, dt])
    rows += [['---'] * 5, ['Total', str(total_params), str(total_buffers), '', '']]
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    print()
    for r in rows:
        print('  '.join(cell + ' ' * (w - len(cell)) for cell, w in zip(r, widths)).rstrip())
    print()
    return outputs
