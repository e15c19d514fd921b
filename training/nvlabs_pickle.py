"""Import of NVlabs network pickles (stylegan2-ada-pytorch and stylegan3 repos) without running their code.

NVlabs pickles embed the Python source of their networks and execute it when unpickled normally.
`load_nvlabs_pickle` reads them with a restricted unpickler that only builds tensors, storages, numpy
scalars, plain containers and records of the persistent objects (class name + instance state); the
embedded source is never executed, only hashed. ganforge modules are then built from the recorded
class names and constructor kwargs, and every tensor is loaded by state_dict name and checked against
the recorded state. Any other global in the pickle is refused with an error that names it. Memo
indices and nesting depth are bounded before and after unpickling, and every network's sizes are
checked against its pickled tensors before it is allocated (`snapshot.construct_module`).

StyleGAN2 records (stylegan2-ada-pytorch and stylegan3 repos) rebuild into `training.networks_stylegan2`;
records whose embedded source is the alias-free `networks_stylegan3` module (it defines SynthesisInput)
rebuild into `training.networks_stylegan3`, with the per-layer sampling design (sizes, rates, cutoffs,
taps, paddings) compared attribute by attribute.

This module lives in `training` because it maps NVlabs class names onto ganforge's network classes.
"""

import _compat_pickle
import collections
import copy
import hashlib
import io
import math
import pickle
import pickletools
import warnings

import numpy as np
import torch

import dnnlib
import dnnlib.util
from torch_utils import persistence
from torch_utils.snapshot import check_nesting, construct_module, load_checked_tensors

#----------------------------------------------------------------------------
# NVlabs pickles: restricted unpickler.

class NVlabsRecord:
    """What an NVlabs persistent object holds: its class name and instance `__dict__` (`state`)."""

    def __init__(self, class_name, state, src_sha256, is_stylegan3):
        self.class_name = class_name
        self.state = state
        self.src_sha256 = src_sha256          # identifies the embedded module source (never executed)
        self.is_stylegan3 = is_stylegan3      # from the alias-free networks_stylegan3 module (T and R configs)

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


# Bounds checked before and after unpickling: the C unpickler sizes its memo by the largest index a
# pickle names (a 9-byte pickle could ask for gigabytes), and nested containers would make every later
# recursive walk (kwargs conversion, deepcopy) fail with RecursionError (`snapshot.check_nesting`).

def _check_pickle_bounds(data, name):
    """Refuse memo indices a pickler could not have produced (each PUT names an index at most the number
    of opcodes read so far, as Python's pickler numbers them 0, 1, 2, ...), without unpickling."""
    try:
        for count, (opcode, arg, _pos) in enumerate(pickletools.genops(data)):
            if opcode.name in ('PUT', 'BINPUT', 'LONG_BINPUT', 'GET', 'BINGET', 'LONG_BINGET') and \
                    (not isinstance(arg, int) or arg < 0 or arg > count):
                raise pickle.UnpicklingError(f'{name}: refusing to load: memo index {arg} at opcode {count} '
                                             f'(a pickler numbers memo entries 0, 1, 2, ...; this one would make '
                                             f'the unpickler allocate memory for {arg} entries)')
    except ValueError as e:  # pickletools: truncated or invalid opcodes
        raise pickle.UnpicklingError(f'{name}: not a valid pickle ({e})') from e


class NVlabsUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals an NVlabs network pickle needs (see `_SAFE_GLOBALS`),
    with memo indices and nesting depth bounded (see `_check_pickle_bounds`, `snapshot.check_nesting`)."""

    def __init__(self, file, name='pickle'):
        super().__init__(file)
        self.file = file
        self.name = name

    def load(self):
        start = self.file.tell()
        _check_pickle_bounds(self.file.read(), self.name)
        self.file.seek(start)
        top = super().load()
        check_nesting(top, self.name, unwrap=lambda obj: obj.state if isinstance(obj, NVlabsRecord) else obj)
        return top

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
                  'fused_modconv_default',
                  # StyleGAN3 (networks_stylegan3): input, per-layer sampling design, synthesis schedule.
                  'channels', 'size', 'sampling_rate', 'bandwidth', 'is_torgb', 'is_critically_sampled', 'in_size',
                  'out_size', 'in_sampling_rate', 'out_sampling_rate', 'tmp_sampling_rate', 'in_cutoff', 'out_cutoff',
                  'in_half_width', 'out_half_width', 'conv_kernel', 'magnitude_ema_beta', 'up_factor', 'down_factor',
                  'up_taps', 'down_taps', 'down_radial', 'layer_names', 'num_critical', 'margin_size', 'output_scale')

_NVLABS_STYLEGAN3_CLASSES = ('FullyConnectedLayer', 'MappingNetwork', 'SynthesisInput', 'SynthesisLayer',
                             'SynthesisNetwork', 'Generator')


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

    if record.is_stylegan3:
        return args, kwargs  # one repo, flat Generator kwargs; every default is the same as ganforge's

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
    a, b = (v.tolist() if isinstance(v, np.ndarray) and not v.dtype.hasobject else v for v in (a, b))
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


def _record_tensors(record, prefix=''):
    """The pickled tensors of a record tree by state_dict name (for the size check before construction)."""
    tensors = dict()
    non_persistent = record.state.get('_non_persistent_buffers_set') or set()
    for group in ('_parameters', '_buffers'):
        for tname, t in (record.state.get(group) or {}).items():
            if t is not None and not (group == '_buffers' and tname in non_persistent):
                tensors[prefix + tname] = t
    for cname, child in (record.state.get('_modules') or {}).items():
        if isinstance(child, NVlabsRecord):
            tensors.update(_record_tensors(child, prefix + cname + '.'))
    return tensors


def _nvlabs_network(record, name, key):
    what = f'{name}: {key}'
    if not isinstance(record, NVlabsRecord):
        raise ValueError(f'{what}: expected an NVlabs network object, got {type(record).__name__}')
    if record.is_stylegan3:
        what += ' (StyleGAN3)'
        if record.class_name not in _NVLABS_STYLEGAN3_CLASSES:
            raise ValueError(f'{what}: unsupported NVlabs StyleGAN3 class {record.class_name!r}; ganforge rebuilds '
                             f'{", ".join(_NVLABS_STYLEGAN3_CLASSES)}')
        cls = persistence.lookup_class(f'training.networks_stylegan3.{record.class_name}')
    else:
        if record.class_name not in _NVLABS_NETWORK_CLASSES:
            raise ValueError(f'{what}: unsupported NVlabs class {record.class_name!r}; ganforge rebuilds '
                             f'{", ".join(_NVLABS_NETWORK_CLASSES)}')
        cls = persistence.lookup_class(f'training.networks_stylegan2.{record.class_name}')
    args, kwargs = _nvlabs_init_kwargs(record, what)
    module = construct_module(cls, args, kwargs, what, tensors=_record_tensors(record))
    tensors = dict()
    _collect_and_verify(record, module, '', tensors, what)
    load_checked_tensors(module, tensors, what)
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
        module = construct_module(cls, args, kwargs, f'{name}: augment_pipe', tensors=_record_tensors(record))
        tensors = dict()
        _collect_and_verify(record, module, '', tensors, f'{name}: augment_pipe')
        load_checked_tensors(module, tensors, f'{name}: augment_pipe')
        return module
    except (ValueError, ImportError, TypeError, KeyError, RuntimeError) as e:
        warnings.warn(f'{name}: dropping the augment pipe (not needed for generation): {e}', RuntimeWarning, stacklevel=3)
        return None


def load_nvlabs_pickle(data, name, device='cpu'):
    """Rebuild the networks of an NVlabs network pickle from its bytes (same result keys as `load_snapshot_bytes`)."""
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
