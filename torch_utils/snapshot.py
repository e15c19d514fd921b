"""Network snapshots as plain data.

A ganforge snapshot (`network-snapshot-NNNNNN.pt`) is a `torch.save` of plain data only, so it loads
with `torch.load(weights_only=True)` and no code runs:

    {'format': 'ganforge-snapshot', 'version': 1,
     'G': record, 'D': record, 'G_ema': record,          # record = module_to_record(module)
     'augment_pipe': record or None,
     'training_set_kwargs': dict or None, 'cur_nimg': int, 'extra': dict or None}

    record = {'class_name': 'training.networks_stylegan2.Generator',
              'init_args': (...), 'init_kwargs': {...}, 'state_dict': {name: CPU tensor}}

Training checkpoints (`training-state-NNNNNN.pt`) hold the same keys plus optimizer and RNG state,
so `load_snapshot_bytes` reads them too. NVlabs network pickles are read by
`training.nvlabs_pickle`; `training.network_loader.load_network` tells the formats apart.
"""

import io
import pickle

import numpy as np
import torch

import dnnlib
import dnnlib.util
from torch_utils import misc
from torch_utils import persistence

FORMAT = 'ganforge-snapshot'
VERSION = 1
NETWORK_KEYS = ('G', 'D', 'G_ema', 'augment_pipe')
MAX_NESTING = 100  # containers inside containers in a network file; NVlabs pickles need about 20

#----------------------------------------------------------------------------
# Plain data.

def to_plain(value, where='value'):
    """Deep-convert `value` to data that `torch.load(weights_only=True)` accepts.

    EasyDicts and other dict subclasses become dicts, numpy scalars and arrays become Python numbers
    and lists, torch dtypes become strings, tensors are detached and moved to CPU. Anything else
    (functions, modules, arbitrary objects) raises TypeError naming where it was found.
    """
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.detach().to('cpu').clone()
    if isinstance(value, dict):
        out = dict()
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f'{where}: dict key {k!r} is not a string or int')
            out[k] = to_plain(v, f'{where}[{k!r}]')
        return out
    if isinstance(value, (list, tuple)):
        items = [to_plain(v, f'{where}[{i}]') for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise TypeError(f'{where}: cannot store a {type(value).__module__}.{type(value).__qualname__} in a snapshot; '
                    f'only numbers, strings, lists, dicts and tensors are allowed')


class SnapshotError(ValueError):
    """A snapshot or checkpoint file cannot be used; the message names the file."""


class SnapshotCorruptError(SnapshotError):
    """The file is truncated or damaged (deleting it and using an older one is the remedy)."""


class SnapshotRefusedError(SnapshotError):
    """The file is readable but holds content that is refused: objects that are not plain data, or absurd nesting."""


def check_nesting(top, name, max_depth=None, unwrap=lambda obj: obj):
    """Refuse containers (dicts, lists, tuples, sets) nested deeper than `max_depth`, and containers that
    contain themselves, so that later recursive walks over data read from a file cannot fail with
    RecursionError. Iterative; `unwrap` maps other record types onto the container they hold."""
    max_depth = MAX_NESTING if max_depth is None else max_depth
    stack = [(top, 0, False)]
    on_path = set()
    while stack:
        obj, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(obj))
            continue
        obj = unwrap(obj)
        if isinstance(obj, dict):
            children = list(obj.keys()) + list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = list(obj)
        else:
            continue
        if id(obj) in on_path:
            raise SnapshotRefusedError(f'{name}: refusing to load: a container in the file contains itself')
        if depth >= max_depth:
            raise SnapshotRefusedError(f'{name}: refusing to load: containers nested more than {max_depth} deep')
        on_path.add(id(obj))
        stack.append((obj, depth, True))
        stack.extend((child, depth + 1, False) for child in children)


def _unwrap(module):
    if isinstance(module, torch.nn.parallel.DistributedDataParallel):
        module = module.module
    return module


def module_to_record(module):
    """Describe a persistent module as plain data: {'class_name', 'init_args', 'init_kwargs', 'state_dict'}."""
    module = _unwrap(module)
    if not isinstance(module, torch.nn.Module) or not persistence.is_persistent(module):
        raise TypeError(f'module_to_record(): {type(module).__qualname__} is not a torch module decorated with '
                        f'@persistence.persistent_class, so it cannot be rebuilt from a snapshot')
    name = persistence.class_name_of(module)
    return dict(
        class_name=name,
        init_args=to_plain(tuple(module.init_args), f'{name}.init_args'),
        init_kwargs=to_plain(dict(module.init_kwargs), f'{name}.init_kwargs'),
        state_dict={k: v.detach().to('cpu').clone() if isinstance(v, torch.Tensor) else to_plain(v, f'{name}.state_dict[{k!r}]')
                    for k, v in module.state_dict().items()},  # non-tensors: get_extra_state() values
    )


def _check_record(record, what):
    if not isinstance(record, dict) or not {'class_name', 'init_args', 'init_kwargs', 'state_dict'} <= set(record):
        got = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f'{what}: not a module record (expected keys class_name, init_args, init_kwargs, state_dict; got {got})')
    if not isinstance(record['class_name'], str) or not isinstance(record['init_kwargs'], dict) \
            or not isinstance(record['init_args'], (tuple, list)) or not isinstance(record['state_dict'], dict):
        raise ValueError(f'{what}: malformed module record')


# Elements a module may hold beyond the tensors stored for it (non-persistent buffers such as filters).
MAX_UNSTORED_ELEMENTS = 1 << 24


def _construct(cls, init_args, init_kwargs, what):
    # Construction draws random initial weights; keep the caller's RNG stream untouched.
    with torch.random.fork_rng(devices=[]):
        try:
            return cls(*init_args, **init_kwargs)
        except TypeError as e:
            raise ValueError(f'{what}: cannot construct {persistence.class_name_of(cls)} from the recorded '
                             f'constructor arguments: {e}') from e


def _check_tensor_shapes(expected, tensors, what, class_name):
    """Require exactly the keys of `expected` (the state_dict of a `class_name`) in `tensors`, with the same shapes."""
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        raise ValueError(f'{what}: tensors do not match {class_name}: '
                         f'missing {missing[:8]}{" ..." if len(missing) > 8 else ""}, '
                         f'unexpected {unexpected[:8]}{" ..." if len(unexpected) > 8 else ""}')
    for k, ref in expected.items():
        t = tensors[k]
        if not isinstance(ref, torch.Tensor):
            continue  # extra state (set_extra_state) is plain data
        if not isinstance(t, torch.Tensor):
            raise ValueError(f'{what}: {k} is a {type(t).__name__}, expected a tensor')
        if t.shape != ref.shape:
            raise ValueError(f'{what}: {k}: expected shape {list(ref.shape)}, got {list(t.shape)}')


def _stored_elements(tensors):
    """Elements the stored tensors really hold (each storage once; an expanded view holds no more than its storage)."""
    storages = dict()
    for t in tensors.values():
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes()) if storage.nbytes() else id(t)
            storages[key] = max(storages.get(key, 0), storage.nbytes() // max(t.element_size(), 1))
    return sum(storages.values())


def construct_module(cls, init_args, init_kwargs, what, tensors=None):
    """Construct `cls(*init_args, **init_kwargs)`. With `tensors` (state_dict name -> the tensors read
    from the file), first build it with fake tensors (meta storage: nothing is allocated) and require
    the same names and shapes as `tensors` and no more than MAX_UNSTORED_ELEMENTS elements beyond what
    `tensors` hold, so that constructor arguments from a file cannot make us allocate more memory than
    the file brings; only then build it for real."""
    if tensors is not None:
        from torch._subclasses.fake_tensor import FakeTensorMode  # meta-backed tensors that tolerate .to('cpu')
        cached = set(misc._constant_cache)  # pylint: disable=protected-access
        try:
            with FakeTensorMode(allow_non_fake_inputs=True):
                fake = _construct(cls, init_args, init_kwargs, what)
                expected = fake.state_dict()
                total = sum(t.numel() for t in list(fake.parameters()) + list(fake.buffers()))
        except ValueError:
            raise
        except Exception as e:  # pylint: disable=broad-except
            raise ValueError(f'{what}: cannot check the sizes of {persistence.class_name_of(cls)} before building it: '
                             f'{type(e).__name__}: {e}') from e
        finally:
            for key in set(misc._constant_cache) - cached:  # pylint: disable=protected-access
                del misc._constant_cache[key]  # never keep a fake tensor where real code looks up constants
        _check_tensor_shapes(expected, tensors, what, cls.__name__)
        extra = total - _stored_elements(tensors)
        if extra > MAX_UNSTORED_ELEMENTS:
            raise ValueError(f'{what}: {persistence.class_name_of(cls)} built from the recorded constructor arguments '
                             f'would hold {total} elements, {extra} more than the file stores (at most '
                             f'{MAX_UNSTORED_ELEMENTS} allowed); refusing to allocate it')
    return _construct(cls, init_args, init_kwargs, what)


@torch.no_grad()
def load_checked_tensors(module, tensors, what):
    """Copy `tensors` (state_dict name -> tensor) into `module`, requiring exactly its state_dict keys and shapes."""
    expected = module.state_dict()
    _check_tensor_shapes(expected, tensors, what, type(module).__name__)
    module.load_state_dict({k: tensors[k] for k in expected}, strict=True)


def record_to_module(record, device='cpu'):
    """Rebuild a module from `module_to_record` output. Only ganforge persistent classes are accepted."""
    _check_record(record, 'record')
    try:
        cls = persistence.lookup_class(record['class_name'])  # ValueError for anything not decorated
    except ImportError as e:
        raise ValueError(f'Unknown network class {record["class_name"]!r}: {e}') from e
    module = construct_module(cls, tuple(record['init_args']), dict(record['init_kwargs']), record['class_name'],
                              tensors=record['state_dict'])
    load_checked_tensors(module, record['state_dict'], record['class_name'])
    return module.to(device)

#----------------------------------------------------------------------------
# Saving.

def make_snapshot(*, G, D, G_ema, augment_pipe=None, training_set_kwargs=None, cur_nimg=0, extra=None):
    """The plain-data snapshot dict (see module docstring); training checkpoints add keys to it."""
    return {
        'format': FORMAT,
        'version': VERSION,
        'G': module_to_record(G) if G is not None else None,
        'D': module_to_record(D) if D is not None else None,
        'G_ema': module_to_record(G_ema),
        'augment_pipe': module_to_record(augment_pipe) if augment_pipe is not None else None,
        'training_set_kwargs': to_plain(training_set_kwargs, 'training_set_kwargs'),
        'cur_nimg': int(cur_nimg),
        'extra': to_plain(extra, 'extra'),
    }


def save_snapshot(path, *, G, D, G_ema, augment_pipe=None, training_set_kwargs=None, cur_nimg=0, extra=None):
    """Write a network snapshot to `path` atomically (temporary file + rename)."""
    data = make_snapshot(G=G, D=D, G_ema=G_ema, augment_pipe=augment_pipe,
                         training_set_kwargs=training_set_kwargs, cur_nimg=cur_nimg, extra=extra)
    with dnnlib.util.atomic_write(path) as f:
        torch.save(data, f)

#----------------------------------------------------------------------------
# Loading.

def load_plain(file, name):
    """torch.load(weights_only=True) of a path or file object, with the failure classified:
    SnapshotRefusedError for objects that are not plain data or absurd nesting, SnapshotCorruptError
    for truncated or damaged files. `name` is used in the messages."""
    try:
        data = torch.load(file, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SnapshotRefusedError(f'{name}: refused: holds objects that are not plain data ({first})') from e
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError) as e:
        raise SnapshotCorruptError(f'{name}: corrupt or truncated file ({type(e).__name__}: {e})') from e
    check_nesting(data, name)
    return data


def load_snapshot_bytes(data, name, device='cpu'):
    """Rebuild the networks of a ganforge snapshot or training checkpoint from its bytes.

    Returns a dict with 'format', 'training_set_kwargs', 'cur_nimg' and one module (or None) per
    NETWORK_KEYS entry. `name` is used in error messages.
    """
    snap = load_plain(io.BytesIO(data), name)
    fmt = snap.get('format') if isinstance(snap, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith('ganforge'):
        raise ValueError(f'{name}: not a ganforge snapshot (format {fmt!r}); expected format "ganforge-snapshot"')
    if not isinstance(snap.get('version'), int) or snap['version'] > VERSION:
        raise ValueError(f'{name}: snapshot version {snap.get("version")!r} is newer than this ganforge '
                         f'(reads version <= {VERSION}); upgrade ganforge')
    if snap.get('G_ema') is None:
        raise ValueError(f'{name}: snapshot has no G_ema')
    result = dict(format=fmt, training_set_kwargs=snap.get('training_set_kwargs'), cur_nimg=snap.get('cur_nimg'))
    for key in NETWORK_KEYS:
        record = snap.get(key)
        result[key] = None
        if record is not None:
            try:
                result[key] = record_to_module(record, device)
            except ValueError as e:
                raise ValueError(f'{name}: {key}: {e}') from e
    return result

#----------------------------------------------------------------------------
