"""Writer of NVlabs-format network pickles for the tests (no NVlabs code involved).

It follows the layout described in shared/reference/nvlabs_stylegan2_keys.md, section 4: one
ordinary pickle of a dict {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'} in which every
network object is a REDUCE of `torch_utils.persistence._reconstruct_persistent_obj` applied to
`(meta,)`, meta = {'type': 'class', 'version': 6, 'module_src': <source text>, 'class_name': ...,
'state': <instance __dict__>}. The state holds the nn.Module bookkeeping (`_parameters`, `_buffers`,
`_modules` of nested persistent objects, empty OrderedDict hooks), plain attributes, numpy float64
scalars for `weight_gain`/`act_gain`, and `_init_args`/`_init_kwargs` with EasyDict option dicts.
Tensors are pickled by torch itself, which gives `_rebuild_parameter` / `_rebuild_tensor_v2` /
`torch.storage._load_from_bytes` with legacy torch.save storage bytes, as in NVlabs files.

Two variants: 'stylegan3' (stylegan3 repo: flat Generator kwargs) and 'ada' (stylegan2-ada-pytorch:
synthesis options nested in `synthesis_kwargs`, and the attributes that repo does not store removed).

StyleGAN3 (alias-free) generators from training.networks_stylegan3 are written with the stylegan3 layout
too: their module source is that of networks_stylegan3 (`stylegan3_module_src`, which defines
SynthesisInput), the discriminator's that of networks_stylegan2 (`D_module_src`); numpy arrays
(`in_size`, `out_size`, `size`) and numpy float64 sampling rates, cutoffs and half-widths are stored as
NVlabs stores them.

The default module source is hostile on purpose: it creates a marker file if anyone executes it.
"""

import collections
import io
import pickle
import warnings

import numpy as np
import torch

import dnnlib

# Attributes the stylegan2-ada-pytorch classes do not store (reference file, section 3).
ADA_MISSING_ATTRS = {
    'Conv2dLayer': ('in_channels', 'out_channels'),
    'FullyConnectedLayer': ('in_features', 'out_features'),
    'SynthesisBlock': ('fused_modconv_default',),
    'SynthesisLayer': ('in_channels', 'out_channels', 'w_dim'),
    'SynthesisNetwork': ('num_fp16_res',),
    'ToRGBLayer': ('in_channels', 'out_channels', 'w_dim'),
}
NUMPY_FLOAT_ATTRS = ('weight_gain', 'act_gain', 'in_sampling_rate', 'out_sampling_rate', 'tmp_sampling_rate', 'in_cutoff',
                     'out_cutoff', 'in_half_width', 'out_half_width', 'sampling_rate', 'bandwidth')
HOOK_DICTS = ('_backward_pre_hooks', '_backward_hooks', '_forward_hooks', '_forward_hooks_with_kwargs',
              '_forward_hooks_always_called', '_forward_pre_hooks', '_forward_pre_hooks_with_kwargs',
              '_state_dict_hooks', '_state_dict_pre_hooks', '_load_state_dict_pre_hooks', '_load_state_dict_post_hooks')


def hostile_module_src(marker_path):
    return ('"""Pretend NVlabs networks module."""\nimport os\n'
            f'open({str(marker_path)!r}, "w").write("module_src was executed")\n' + '# padding\n' * 50)


def stylegan3_module_src(marker_path):
    """Hostile source that reads as the NVlabs networks_stylegan3 module (it defines SynthesisInput)."""
    return hostile_module_src(marker_path) + 'class SynthesisInput(torch.nn.Module):\n    pass\n'


class Global:
    """A global reference written as-is (module, name), whether or not it is importable here."""

    def __init__(self, module, name):
        self.module = module
        self.name = name

    def __call__(self, *args):  # save_reduce() insists on a callable; this one is only ever written
        raise TypeError(f'{self.module}.{self.name} is a placeholder for pickling')


class Reduce:
    """An object pickled as REDUCE(func, args)."""

    def __init__(self, func, args):
        self.func = func
        self.args = args

    def __reduce__(self):
        return (self.func, self.args)


class _Pickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def save_named_global(self, obj):
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode('utf-8'))
        self.memoize(obj)

    dispatch[Global] = save_named_global


def dumps(obj, protocol=4):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # TypedStorage deprecation inside torch's tensor pickling
        _Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


_RECONSTRUCT = Global('torch_utils.persistence', '_reconstruct_persistent_obj')


def to_easydict(value):
    if isinstance(value, dict):
        return dnnlib.EasyDict({k: to_easydict(v) for k, v in value.items()})
    if isinstance(value, list):
        return [to_easydict(v) for v in value]
    return value


def persistent_object(module, module_src, variant='stylegan3', root_kwargs=None):
    """The REDUCE record of `module` (a ganforge network), with nested records for its children."""
    cls_name = type(module).__name__
    state = dict(training=module.training)
    state['_parameters'] = collections.OrderedDict(
        (k, torch.nn.Parameter(v.detach().clone(), requires_grad=False) if v is not None else None)
        for k, v in module._parameters.items())
    state['_buffers'] = collections.OrderedDict((k, v.detach().clone() if v is not None else None) for k, v in module._buffers.items())
    state['_non_persistent_buffers_set'] = set()
    state['_is_full_backward_hook'] = None
    for name in HOOK_DICTS:
        state[name] = collections.OrderedDict()
    state['_modules'] = collections.OrderedDict(
        (k, persistent_object(m, module_src, variant) if m is not None else None) for k, m in module._modules.items())
    skip = set(ADA_MISSING_ATTRS.get(cls_name, ())) if variant == 'ada' else set()
    skip.add('fp16_dtype')  # ganforge-only option; NVlabs files never have it
    for k, v in module.__dict__.items():
        if k.startswith('_') or k == 'training' or k in skip:
            continue
        if k in NUMPY_FLOAT_ATTRS:
            v = np.float64(v)
        if isinstance(v, np.ndarray):
            v = np.array(v)  # own contiguous copy (sizes are broadcast views)
        if v is None or isinstance(v, (bool, int, float, str, list, tuple, np.floating, np.ndarray)):
            state[k] = v
    state['_init_args'] = tuple(module.init_args)
    state['_init_kwargs'] = to_easydict(root_kwargs if root_kwargs is not None else dict(module.init_kwargs))
    meta = dict(type='class', version=6, module_src=module_src, class_name=cls_name, state=state)
    return Reduce(_RECONSTRUCT, (meta,))


def ada_generator_kwargs(G):
    """stylegan2-ada-pytorch style Generator kwargs: synthesis options nested in synthesis_kwargs."""
    kw = dict(G.init_kwargs)
    top = {k: kw.pop(k) for k in ('z_dim', 'w_dim', 'c_dim', 'img_resolution', 'img_channels', 'mapping_kwargs') if k in kw}
    top['synthesis_kwargs'] = kw
    return top


def network_pickle_bytes(G, D, G_ema, module_src, variant='stylegan3', training_set_kwargs=None, G_root_kwargs=None,
                         augment_pipe=None, protocol=4, D_module_src=None):
    """A complete NVlabs-style network pickle as bytes (D_module_src: D's own source, default module_src)."""
    if variant == 'ada' and G_root_kwargs is None:
        G_root_kwargs = ada_generator_kwargs(G_ema)
    data = dict()
    if variant == 'ada':
        data['training_set_kwargs'] = training_set_kwargs
    data['G'] = persistent_object(G, module_src, variant, G_root_kwargs) if G is not None else None
    data['D'] = persistent_object(D, D_module_src or module_src, variant) if D is not None else None
    data['G_ema'] = persistent_object(G_ema, module_src, variant, G_root_kwargs)
    data['augment_pipe'] = augment_pipe
    if variant != 'ada':
        data['training_set_kwargs'] = training_set_kwargs
    return dumps(data, protocol=protocol)
