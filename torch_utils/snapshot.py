"""Network snapshots as plain data, and safe import of NVlabs network pickles.

A ganforge snapshot (`network-snapshot-NNNNNN.pt`) is a `torch.save` of plain data only, so it loads
with `torch.load(weights_only=True)` and no code runs:

    {'format': 'ganforge-snapshot', 'version': 1,
     'G': record, 'D': record, 'G_ema': record,          # record = module_to_record(module)
     'augment_pipe': record or None,
     'training_set_kwargs': dict or None, 'cur_nimg': int, 'extra': dict or None}

    record = {'class_name': 'training.networks_stylegan2.Generator',
              'init_args': (...), 'init_kwargs': {...}, 'state_dict': {name: CPU tensor}}

Training checkpoints (`training-state-NNNNNN.pt`) hold the same keys plus optimizer and RNG state,
so `load_network` reads them too.

NVlabs network pickles (stylegan2-ada-pytorch and stylegan3 repos, StyleGAN2 classes) embed the
Python source of their networks and execute it when unpickled normally. `load_network` reads them
with a restricted unpickler that only builds tensors, storages, numpy scalars, plain containers and
records of the persistent objects (class name + instance state); the embedded source is never
executed. ganforge modules are then built from the recorded class names and constructor kwargs, and
every tensor is loaded by state_dict name and checked against the recorded state. Any other global
in the pickle is refused with an error that names it.
"""

import _compat_pickle
import collections
import copy
import hashlib
import io
import math
import pickle
import warnings

import numpy as np
import torch

import dnnlib
import dnnlib.util
from torch_utils import persistence

FORMAT = 'ganforge-snapshot'
VERSION = 1
NETWORK_KEYS = ('G', 'D', 'G_ema', 'augment_pipe')

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


def _construct(cls, init_args, init_kwargs, what):
    # Construction draws random initial weights; keep the caller's RNG stream untouched.
    with torch.random.fork_rng(devices=[]):
        try:
            return cls(*init_args, **init_kwargs)
        except TypeError as e:
            raise ValueError(f'{what}: cannot construct {persistence.class_name_of(cls)} from the recorded '
                             f'constructor arguments: {e}') from e


@torch.no_grad()
def _load_tensors(module, tensors, what):
    """Copy `tensors` (state_dict name -> tensor) into `module`, requiring exactly its state_dict keys and shapes."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        raise ValueError(f'{what}: tensors do not match {type(module).__name__}: '
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
    module.load_state_dict({k: tensors[k] for k in expected}, strict=True)


def record_to_module(record, device='cpu'):
    """Rebuild a module from `module_to_record` output. Only ganforge persistent classes are accepted."""
    _check_record(record, 'record')
    try:
        cls = persistence.lookup_class(record['class_name'])  # ValueError for anything not decorated
    except ImportError as e:
        raise ValueError(f'Unknown network class {record["class_name"]!r}: {e}') from e
    module = _construct(cls, tuple(record['init_args']), dict(record['init_kwargs']), record['class_name'])
    _load_tensors(module, record['state_dict'], record['class_name'])
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

def load_network(path_or_url, device='cpu'):
    """Load a ganforge snapshot / training checkpoint or an NVlabs network pickle.

    Returns a dict with 'G', 'D', 'G_ema' (modules on `device` in eval mode with requires_grad off;
    'G' and 'D' may be None when the file has only G_ema), 'augment_pipe' (module or None),
    'training_set_kwargs' (dict or None), 'cur_nimg' (int, None for NVlabs pickles) and
    'format' (the ganforge file's format name, e.g. 'ganforge-snapshot', or 'nvlabs-pickle').
    """
    with dnnlib.util.open_url(path_or_url) as f:
        data = f.read()
    name = str(path_or_url)
    if data[:4] == b'PK\x03\x04':
        result = _load_ganforge(data, name, device)
    elif data[:1] == b'\x80':
        result = _load_nvlabs(data, name, device)
    else:
        raise ValueError(f'{name}: not a ganforge snapshot (torch.save zip) or an NVlabs network pickle')
    for key in NETWORK_KEYS:
        module = result[key]
        if module is not None:
            module.eval().requires_grad_(False)
    return result


def _load_ganforge(data, name, device):
    try:
        snap = torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f'{name}: refusing to load: the file holds objects that are not plain data ({e})') from e
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise ValueError(f'{name}: corrupt or truncated snapshot ({e})') from e
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
# NVlabs pickles: restricted unpickler.

class NVlabsRecord:
    """What an NVlabs persistent object holds: its class name and instance `__dict__` (`state`)."""

    def __init__(self, class_name, state, src_sha256, is_stylegan3):
        self.class_name = class_name
        self.state = state
        self.src_sha256 = src_sha256          # identifies the embedded module source (never executed)
        self.is_stylegan3 = is_stylegan3      # alias-free StyleGAN3 module, which ganforge does not implement

    def __repr__(self):
        return f'NVlabsRecord({self.class_name})'


class _Marker:
    """Stands in for a class that a pickle may name as an argument but must not call."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f'<{self.name}>'


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get('type') != 'class' or not isinstance(meta.get('class_name'), str) \
            or not isinstance(meta.get('state'), dict):
        raise pickle.UnpicklingError('malformed NVlabs persistent object (expected meta dict with type "class", class_name, state)')
    src = meta.get('module_src', '')
    src = src if isinstance(src, str) else ''
    return NVlabsRecord(meta['class_name'], meta['state'], hashlib.sha256(src.encode('utf-8')).hexdigest(),
                        'class SynthesisInput' in src)


def _load_storage_from_bytes(b):
    if not isinstance(b, (bytes, bytearray)):
        raise pickle.UnpicklingError('torch.storage._load_from_bytes: expected bytes')
    return torch.load(io.BytesIO(bytes(b)), map_location='cpu', weights_only=True)


def _check_storage(storage):
    if not isinstance(storage, torch.TypedStorage):
        raise pickle.UnpicklingError(f'tensor rebuild: expected a storage, got {type(storage).__name__}')


def _check_ints(seq, what):
    if not isinstance(seq, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in seq):
        raise pickle.UnpicklingError(f'tensor rebuild: {what} must be a tuple of non-negative ints, got {seq!r}')


def _rebuild_tensor(storage, storage_offset, size, stride):
    _check_storage(storage)
    _check_ints(size, 'size')
    _check_ints(stride, 'stride')
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise pickle.UnpicklingError(f'tensor rebuild: bad storage offset {storage_offset!r}')
    return torch._utils._rebuild_tensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError(f'parameter rebuild: expected a tensor, got {type(data).__name__}')
    return data  # values only; ganforge decides what is a parameter


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in (_rebuild_tensor_v2, _rebuild_parameter) or not isinstance(new_type, _Marker):
        raise pickle.UnpicklingError('torch._tensor._rebuild_from_type_v2: only plain tensors and parameters are accepted')
    return func(*args)


def _make_dtype(spec, align=False, copy=False):
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f'numpy.dtype: expected a type code string, got {spec!r}')
    dtype = np.dtype(spec)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f'numpy.dtype: object dtype {spec!r} refused')
    return np.dtype(spec, align=bool(align), copy=bool(copy))


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError('numpy scalar: only numeric dtypes with raw bytes are accepted')
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0].copy()


def _numpy_reconstruct(subtype, shape, dtype_code):
    # An empty array; BUILD then fills it through ndarray.__setstate__ (elements, if any, came through this unpickler).
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError('numpy _reconstruct: only numpy.ndarray is accepted')
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _codecs_encode(text, encoding='utf-8'):
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise pickle.UnpicklingError('_codecs.encode: only latin1-encoded bytes (pickle protocol 2) are accepted')
    return text.encode('latin1')


_TORCH_STORAGE_NAMES = ('FloatStorage', 'DoubleStorage', 'HalfStorage', 'BFloat16Storage', 'LongStorage',
                        'IntStorage', 'ShortStorage', 'CharStorage', 'ByteStorage', 'BoolStorage')

_SAFE_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('dnnlib.util', 'EasyDict'): dnnlib.EasyDict,
    ('dnnlib', 'EasyDict'): dnnlib.EasyDict,
    ('numpy', 'dtype'): _make_dtype,
    ('numpy._core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy.core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy._core.multiarray', '_reconstruct'): _numpy_reconstruct,
    ('numpy.core.multiarray', '_reconstruct'): _numpy_reconstruct,
    ('numpy', 'ndarray'): np.ndarray,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch._tensor', '_rebuild_from_type_v2'): _rebuild_from_type_v2,
    ('torch._tensor', 'Tensor'): _Marker('torch.Tensor'),
    ('torch', 'Tensor'): _Marker('torch.Tensor'),
    ('torch.nn.parameter', 'Parameter'): _Marker('torch.nn.Parameter'),
    ('torch.storage', '_load_from_bytes'): _load_storage_from_bytes,
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): _reconstruct_persistent_obj,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('_codecs', 'encode'): _codecs_encode,
    **{('torch', n): _Marker(f'torch.{n}') for n in _TORCH_STORAGE_NAMES},
}


class NVlabsUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals an NVlabs network pickle needs (see `_SAFE_GLOBALS`)."""

    def __init__(self, file, name='pickle'):
        super().__init__(file)
        self.name = name

    def find_class(self, module, name):
        # Python 2 names that protocol <= 2 pickles use (e.g. __builtin__.set); still checked below.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module.startswith('dnnlib.tflib'):
            raise pickle.UnpicklingError(f'{self.name}: TensorFlow pickle ({module}.{name}): convert it with NVlabs '
                                         f'legacy.py first (stylegan2-ada-pytorch: python legacy.py --source=... --dest=...)')
        raise pickle.UnpicklingError(f'{self.name}: refusing to load: the pickle references the global {module}.{name}, '
                                     f'which is not a tensor, a plain container or an NVlabs network record')

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f'{self.name}: unexpected persistent id in a network pickle')


def _plain_state(value):
    """EasyDicts -> dicts, numpy scalars -> Python numbers, recursively (for kwargs read from a pickle)."""
    if isinstance(value, dict):
        return {k: _plain_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain_state(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value

#----------------------------------------------------------------------------
# NVlabs pickles: rebuilding ganforge modules.

_NVLABS_NETWORK_CLASSES = ('FullyConnectedLayer', 'Conv2dLayer', 'MappingNetwork', 'SynthesisLayer', 'ToRGBLayer',
                           'SynthesisBlock', 'SynthesisNetwork', 'Generator', 'DiscriminatorBlock',
                           'MinibatchStdLayer', 'DiscriminatorEpilogue', 'Discriminator')

# Plain attributes compared between the pickled state and the rebuilt module (when both have them).
_CHECKED_ATTRS = ('z_dim', 'c_dim', 'w_dim', 'num_ws', 'img_resolution', 'img_channels', 'block_resolutions',
                  'architecture', 'use_fp16', 'channels_last', 'conv_clamp', 'up', 'down', 'padding', 'activation',
                  'resolution', 'in_channels', 'out_channels', 'in_features', 'out_features', 'is_last',
                  'w_avg_beta', 'num_layers', 'group_size', 'num_channels', 'cmap_dim', 'first_layer_idx',
                  'use_noise', 'weight_gain', 'bias_gain', 'act_gain', 'num_conv', 'num_torgb', 'num_fp16_res',
                  'fused_modconv_default')


def _child(record, name):
    child = record.state.get('_modules', {}).get(name)
    return child if isinstance(child, NVlabsRecord) else None


def _count_fp16_blocks(record):
    return sum(1 for child in record.state.get('_modules', {}).values()
               if isinstance(child, NVlabsRecord) and child.state.get('use_fp16') is True)


def _nvlabs_init_kwargs(record, what):
    """Constructor kwargs for the ganforge class, normalised across the stylegan2-ada and stylegan3 repos.

    stylegan2-ada nests the synthesis options in `synthesis_kwargs` and has different defaults
    (num_fp16_res 0, conv_clamp None, w_avg_beta 0.995); every option whose default differs between the
    repos is filled from the recorded instance state when the kwargs leave it out. stylegan2-ada blocks
    have no fused_modconv_default; they get 'ada', which reproduces their rule (fused in eval mode for
    float32 blocks or a batch of one).
    """
    state = record.state
    if '_init_kwargs' not in state:
        raise ValueError(f'{what}: the pickled {record.class_name} has no recorded constructor arguments (_init_kwargs)')
    args = tuple(_plain_state(state.get('_init_args', ())))
    kwargs = _plain_state(dict(state['_init_kwargs']))

    if record.class_name == 'Generator':
        kwargs.update(kwargs.pop('synthesis_kwargs', None) or {})
        synthesis, mapping = _child(record, 'synthesis'), _child(record, 'mapping')
        if synthesis is None or mapping is None:
            raise ValueError(f'{what}: the pickled Generator lacks its synthesis or mapping network')
        if 'num_fp16_res' not in kwargs:  # stylegan3-repo synthesis networks store it; otherwise count fp16 blocks
            kwargs['num_fp16_res'] = _plain_state(synthesis.state.get('num_fp16_res', _count_fp16_blocks(synthesis)))
        b4 = _child(synthesis, 'b4')
        conv1 = _child(b4, 'conv1') if b4 is not None else None
        if 'conv_clamp' not in kwargs and conv1 is not None:
            kwargs['conv_clamp'] = conv1.state.get('conv_clamp')
        if 'fused_modconv_default' not in kwargs:
            # stylegan3-repo blocks record their default; stylegan2-ada blocks have none and apply their own rule.
            kwargs['fused_modconv_default'] = (b4.state.get('fused_modconv_default', 'ada') if b4 is not None else 'ada')
        mapping_kwargs = dict(kwargs.get('mapping_kwargs') or {})
        if 'w_avg_beta' not in mapping_kwargs and 'w_avg_beta' in mapping.state:
            mapping_kwargs['w_avg_beta'] = _plain_state(mapping.state['w_avg_beta'])
        kwargs['mapping_kwargs'] = mapping_kwargs

    if record.class_name == 'Discriminator':
        kwargs.setdefault('num_fp16_res', _count_fp16_blocks(record))
        epilogue = _child(record, 'b4')
        conv = _child(epilogue, 'conv') if epilogue is not None else None
        if 'conv_clamp' not in kwargs and conv is not None:
            kwargs['conv_clamp'] = conv.state.get('conv_clamp')
    return args, kwargs


def _same_value(a, b):
    a, b = _plain_state(a), _plain_state(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-12, abs_tol=0)
    return a == b


def _collect_and_verify(record, module, prefix, tensors, what):
    """Walk the pickled tree next to the rebuilt module: same class names, children and plain attributes;
    gather the pickled tensors by state_dict name into `tensors`."""
    path = prefix.rstrip('.') or '<root>'
    if type(module).__name__ != record.class_name:
        raise ValueError(f'{what}: {path}: pickled {record.class_name}, rebuilt {type(module).__name__}')
    state = record.state
    for attr in _CHECKED_ATTRS:
        if attr in state and attr in module.__dict__ and not _same_value(state[attr], module.__dict__[attr]):
            raise ValueError(f'{what}: {path}.{attr}: pickled {state[attr]!r}, rebuilt {module.__dict__[attr]!r} '
                             f'(the constructor kwargs do not reproduce the pickled network)')
    non_persistent = state.get('_non_persistent_buffers_set') or set()
    for group in ('_parameters', '_buffers'):
        for name, t in (state.get(group) or {}).items():
            if t is None or (group == '_buffers' and name in non_persistent):
                continue
            tensors[prefix + name] = t
    pickled_children = {k: v for k, v in (state.get('_modules') or {}).items() if v is not None}
    rebuilt_children = dict(module.named_children())
    if set(pickled_children) != set(rebuilt_children):
        raise ValueError(f'{what}: {path}: pickled submodules {sorted(pickled_children)}, '
                         f'rebuilt {sorted(rebuilt_children)}')
    for name, child in pickled_children.items():
        if not isinstance(child, NVlabsRecord):
            raise ValueError(f'{what}: {path}.{name}: expected a persistent network object, got {type(child).__name__}')
        _collect_and_verify(child, rebuilt_children[name], prefix + name + '.', tensors, what)


def _nvlabs_network(record, name, key):
    what = f'{name}: {key}'
    if not isinstance(record, NVlabsRecord):
        raise ValueError(f'{what}: expected an NVlabs network object, got {type(record).__name__}')
    if record.is_stylegan3:
        raise ValueError(f'{what}: StyleGAN3 (alias-free) networks are not supported; ganforge loads StyleGAN2 networks')
    if record.class_name not in _NVLABS_NETWORK_CLASSES:
        raise ValueError(f'{what}: unsupported NVlabs class {record.class_name!r}; ganforge rebuilds '
                         f'{", ".join(_NVLABS_NETWORK_CLASSES)}')
    cls = persistence.lookup_class(f'training.networks_stylegan2.{record.class_name}')
    args, kwargs = _nvlabs_init_kwargs(record, what)
    module = _construct(cls, args, kwargs, what)
    tensors = dict()
    _collect_and_verify(record, module, '', tensors, what)
    _load_tensors(module, tensors, what)
    return module


def _nvlabs_augment_pipe(record, name):
    """Rebuild the ADA pipe when ganforge has a compatible training.augment.AugmentPipe, else drop it."""
    if record is None:
        return None
    try:
        if not isinstance(record, NVlabsRecord) or record.class_name != 'AugmentPipe':
            raise ValueError(f'unexpected object {record!r}')
        cls = persistence.lookup_class('training.augment.AugmentPipe')
        args, kwargs = _nvlabs_init_kwargs(record, f'{name}: augment_pipe')
        module = _construct(cls, args, kwargs, f'{name}: augment_pipe')
        tensors = dict()
        _collect_and_verify(record, module, '', tensors, f'{name}: augment_pipe')
        _load_tensors(module, tensors, f'{name}: augment_pipe')
        return module
    except (ValueError, ImportError, TypeError, KeyError, RuntimeError) as e:
        warnings.warn(f'{name}: dropping the augment pipe (not needed for generation): {e}', RuntimeWarning, stacklevel=3)
        return None


def _load_nvlabs(data, name, device):
    try:
        top = NVlabsUnpickler(io.BytesIO(data), name=name).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, RuntimeError) as e:
        raise ValueError(f'{name}: cannot load NVlabs pickle: {e}') from e
    if not isinstance(top, dict) or top.get('G_ema') is None:
        got = sorted(top) if isinstance(top, dict) else type(top).__name__
        raise ValueError(f'{name}: not an NVlabs network pickle (expected a dict with G_ema, got {got})')
    result = dict(format='nvlabs-pickle', cur_nimg=None)
    for key in ('G', 'D', 'G_ema'):
        result[key] = _nvlabs_network(top[key], name, key).to(device) if top.get(key) is not None else None
    pipe = _nvlabs_augment_pipe(top.get('augment_pipe'), name)
    result['augment_pipe'] = pipe.to(device) if pipe is not None else None
    tsk = top.get('training_set_kwargs')
    result['training_set_kwargs'] = copy.deepcopy(_plain_state(dict(tsk))) if isinstance(tsk, dict) else None
    return result

#----------------------------------------------------------------------------
