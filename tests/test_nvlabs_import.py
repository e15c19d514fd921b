"""Import of NVlabs network pickles (stylegan3-repo and stylegan2-ada-pytorch layouts) through the
restricted unpickler: pickles written by tests/nvlabs_pickle_writer.py load into ganforge modules with
the same outputs, the embedded module source never runs, and hostile pickles are refused."""

import io
import pickle

import pytest
import torch

import dnnlib
from tests import nvlabs_pickle_writer as W
from training import network_loader, nvlabs_pickle
from training import networks_stylegan2 as nets


pytestmark = pytest.mark.usefixtures('one_thread')

DOCUMENTED_GLOBALS = {
    ('collections', 'OrderedDict'), ('dnnlib.util', 'EasyDict'), ('numpy', 'dtype'),
    ('torch._utils', '_rebuild_parameter'), ('torch._utils', '_rebuild_tensor_v2'), ('torch.storage', '_load_from_bytes'),
    ('torch_utils.persistence', '_reconstruct_persistent_obj'),
}


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / 'MARKER_module_src_ran'
    yield path
    assert not path.exists(), 'the embedded module source (or a hostile reduce) was executed'


def _sg3_nets():
    G = dnnlib.util.construct_class_by_name(class_name='training.networks_stylegan2.Generator',
        z_dim=16, w_dim=16, mapping_kwargs=dnnlib.EasyDict(num_layers=2, layer_features=8), channel_base=256, channel_max=16,
        num_fp16_res=0, conv_clamp=256, architecture='skip', fused_modconv_default='inference_only', c_dim=0,
        img_resolution=16, img_channels=3)
    D = nets.Discriminator(block_kwargs=dnnlib.EasyDict(freeze_layers=0), mapping_kwargs=dnnlib.EasyDict(),
                           epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4), channel_base=256, channel_max=16,
                           architecture='resnet', c_dim=0, img_resolution=16, img_channels=3)
    G_ema = nets.Generator(**G.init_kwargs)
    with torch.no_grad():
        for g in (G, G_ema):
            g.mapping.w_avg.copy_(torch.randn(16))
            for m in g.modules():
                if isinstance(m, nets.SynthesisLayer):
                    m.noise_strength.fill_(0.1)
    return G.eval(), D.eval(), G_ema.eval()


def _ada_nets(num_fp16_res=4, conv_clamp=256):
    G = nets.Generator(z_dim=16, w_dim=16, mapping_kwargs=dict(num_layers=2, w_avg_beta=0.995), channel_base=256, channel_max=32,
                       num_fp16_res=num_fp16_res, conv_clamp=conv_clamp, c_dim=4, img_resolution=32, img_channels=3)
    D = nets.Discriminator(block_kwargs=dict(freeze_layers=2), mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=2),
                           channel_base=256, channel_max=32, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp, c_dim=4,
                           img_resolution=32, img_channels=3)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(16))
    return G.eval(), D.eval()


def _ada_root_kwargs(synthesis_kwargs):
    return dict(z_dim=16, w_dim=16, mapping_kwargs=dict(num_layers=2), synthesis_kwargs=synthesis_kwargs,
                c_dim=4, img_resolution=32, img_channels=3)


def _load_bytes(tmp_path, data, name='net.pkl'):
    path = tmp_path / name
    path.write_bytes(data)
    return network_loader.load_network(str(path))


def _globals_of(data):
    seen = set()

    class Recorder(nvlabs_pickle.NVlabsUnpickler):
        def find_class(self, module, name):
            seen.add((module, name))
            return super().find_class(module, name)
    Recorder(io.BytesIO(data)).load()
    return seen


def _assert_same_outputs(src_G, loaded_G, c=None, n=3):
    z = torch.randn(n, src_G.z_dim)
    for psi, cutoff in ((1, None), (0.7, None), (0.5, 2)):
        a = src_G(z, c, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode='const')
        b = loaded_G(z, c, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode='const')
        assert torch.equal(a, b)

#----------------------------------------------------------------------------

def test_stylegan3_repo_pickle(tmp_path, marker):
    G, D, G_ema = _sg3_nets()
    tsk = dict(class_name='training.dataset.ImageFolderDataset', path='ffhq.zip', use_labels=False, max_size=70000, xflip=False,
               resolution=16, random_seed=0)
    data = W.network_pickle_bytes(G, D, G_ema, W.hostile_module_src(marker), training_set_kwargs=tsk)
    globals_used = _globals_of(data)
    assert globals_used - DOCUMENTED_GLOBALS in ({('numpy._core.multiarray', 'scalar')}, {('numpy.core.multiarray', 'scalar')})
    assert data.count(b'Pretend NVlabs networks module') == 1  # module source written once, then memo references

    out = _load_bytes(tmp_path, data)
    assert out['format'] == 'nvlabs-pickle' and out['training_set_kwargs'] == tsk and out['augment_pipe'] is None
    for key, src in (('G', G), ('D', D), ('G_ema', G_ema)):
        mod = out[key]
        assert type(mod) is type(src) and not mod.training
        assert not any(p.requires_grad for p in mod.parameters())
        # Same kwargs; options whose defaults differ between NVlabs repos are made explicit
        # (num_fp16_res as the count of fp16 blocks, which selects the same blocks).
        expected = src.init_kwargs
        if key != 'D':
            expected['mapping_kwargs'] = dict(expected['mapping_kwargs'], w_avg_beta=0.998)
        else:
            expected.update(num_fp16_res=2, conv_clamp=256)
        assert mod.init_kwargs == expected
        assert list(mod.state_dict()) == list(src.state_dict())
        if key != 'D':
            assert mod.synthesis.b8.fused_modconv_default == 'inference_only'
    _assert_same_outputs(G_ema, out['G_ema'])
    img = G(torch.randn(4, 16), None, noise_mode='const')
    assert torch.equal(out['D'](img, None), D(img, None))
    assert out['G_ema'].mapping.w_avg_beta == 0.998


def test_stylegan2_ada_conditional_pickle_with_frozen_d_and_fp16(tmp_path, marker):
    G, D = _ada_nets()
    root = _ada_root_kwargs(dict(channel_base=256, channel_max=32, num_fp16_res=4, conv_clamp=256))
    data = W.network_pickle_bytes(G, D, G, W.hostile_module_src(marker), variant='ada', G_root_kwargs=root,
                                  training_set_kwargs=dict(path='cifar.zip', use_labels=True))
    out = _load_bytes(tmp_path, data)
    G2, D2 = out['G_ema'], out['D']
    assert G2.mapping.w_avg_beta == 0.995  # ada default, read from the pickled mapping state
    # ada blocks have no fused_modconv_default: their rule (eval mode and float32 block or batch 1) is kept.
    assert G2.init_kwargs['fused_modconv_default'] == 'ada' and G2.synthesis.b16.fused_modconv_default == 'ada'
    assert [G2.synthesis.b4.use_fp16, G2.synthesis.b8.use_fp16, G2.synthesis.b16.use_fp16, G2.synthesis.b32.use_fp16] == [False, True, True, True]
    assert [D2.b32.use_fp16, D2.b16.use_fp16, D2.b8.use_fp16] == [True, True, True]
    buffers = dict(D2.named_buffers())
    assert {'b32.fromrgb.weight', 'b32.fromrgb.bias', 'b32.conv0.weight', 'b32.conv0.bias'} <= set(buffers)
    assert 'b32.conv1.weight' in dict(D2.named_parameters())
    c = torch.eye(4)[[0, 3, 1]]
    _assert_same_outputs(G, G2, c)
    img = G(torch.randn(4, 16), torch.eye(4), noise_mode='const')
    assert torch.equal(D2(img, torch.eye(4)), D(img, torch.eye(4)))


def test_stylegan2_ada_defaults_filled_from_state(tmp_path, marker):
    # ada kwargs that leave num_fp16_res / conv_clamp / w_avg_beta out mean 0 / None / 0.995 there.
    G, D = _ada_nets(num_fp16_res=0, conv_clamp=None)
    root = _ada_root_kwargs(dict(channel_base=256, channel_max=32))
    data = W.network_pickle_bytes(G, D, G, W.hostile_module_src(marker), variant='ada', G_root_kwargs=root)
    out = _load_bytes(tmp_path, data)
    assert out['G_ema'].synthesis.b4.conv1.conv_clamp is None
    assert not any(getattr(out['G_ema'].synthesis, f'b{r}').use_fp16 for r in (4, 8, 16, 32))
    _assert_same_outputs(G, out['G_ema'], torch.eye(4)[[1, 2]], n=2)


def test_protocol2_pickle(tmp_path, marker):
    G, D, G_ema = _sg3_nets()
    data = W.network_pickle_bytes(None, None, G_ema, W.hostile_module_src(marker), protocol=2)
    assert ('_codecs', 'encode') in _globals_of(data)  # protocol 2 writes bytes this way
    out = _load_bytes(tmp_path, data)
    assert out['G'] is None and out['D'] is None
    _assert_same_outputs(G_ema, out['G_ema'], n=2)

#----------------------------------------------------------------------------
# Refusals.

def _meta(record):
    return record.args[0]


def test_hostile_reduce_refused(tmp_path, marker):
    evil = W.Reduce(W.Global('os', 'system'), (f'touch {marker}',))
    with pytest.raises(ValueError, match=r'global os\.system'):
        _load_bytes(tmp_path, W.dumps({'G_ema': evil}))
    evil = W.Reduce(W.Global('subprocess', 'Popen'), (['touch', str(marker)],))
    with pytest.raises(ValueError, match=r'global subprocess\.Popen'):
        _load_bytes(tmp_path, W.dumps({'G_ema': evil}))
    # The real thing: an object whose __reduce__ is os.system (pickled by the standard pickler).

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f'touch {marker}',))
    with pytest.raises(ValueError, match=r'refusing to load.*system'):
        _load_bytes(tmp_path, pickle.dumps({'G_ema': Evil()}))
    # Hidden inside the bytes of a storage: torch.load(weights_only=True) refuses it too.
    evil_storage = W.Reduce(W.Global('torch.storage', '_load_from_bytes'), (pickle.dumps(Evil(), protocol=2),))
    with pytest.raises(ValueError, match='system'):
        _load_bytes(tmp_path, W.dumps({'G_ema': evil_storage}))


def test_hostile_global_nested_in_network_state_refused(tmp_path, marker):
    _, _, G_ema = _sg3_nets()
    record = W.persistent_object(G_ema, W.hostile_module_src(marker))
    mapping = _meta(record)['state']['_modules']['mapping']
    _meta(mapping)['state']['evil'] = W.Reduce(W.Global('builtins', 'eval'), (f"__import__('os').system('touch {marker}')",))
    with pytest.raises(ValueError, match=r'global builtins\.eval'):
        _load_bytes(tmp_path, W.dumps({'G': None, 'D': None, 'G_ema': record}))


def test_tensorflow_pickle_refused(tmp_path):
    tf = W.Reduce(W.Global('dnnlib.tflib.network', 'Network'), ())
    with pytest.raises(ValueError, match='TensorFlow pickle.*legacy.py'):
        _load_bytes(tmp_path, W.dumps({'G': tf, 'D': tf, 'Gs': tf}))


def test_unknown_and_stylegan3_classes_refused(tmp_path, marker):
    _, _, G_ema = _sg3_nets()
    record = W.persistent_object(G_ema, W.hostile_module_src(marker))
    _meta(record)['class_name'] = 'EvilNetwork'
    with pytest.raises(ValueError, match="unsupported NVlabs class 'EvilNetwork'"):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))
    # StyleGAN2 kwargs in a record whose source is networks_stylegan3 do not build a StyleGAN3 generator.
    record = W.persistent_object(G_ema, 'class SynthesisInput(torch.nn.Module): ...\n')
    with pytest.raises(ValueError, match=r'\(StyleGAN3\): cannot construct training\.networks_stylegan3\.Generator'):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))


def test_inconsistent_state_refused(tmp_path, marker):
    _, _, G_ema = _sg3_nets()
    src = W.hostile_module_src(marker)
    record = W.persistent_object(G_ema, src)
    conv1 = _meta(_meta(_meta(_meta(record)['state']['_modules']['synthesis'])['state']['_modules']['b4'])['state']['_modules']['conv1'])
    conv1['state']['conv_clamp'] = 128
    with pytest.raises(ValueError, match=r'synthesis\.b4\.conv1\.conv_clamp: pickled 128, rebuilt 256'):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))

    record = W.persistent_object(G_ema, src)
    fc0 = _meta(_meta(record)['state']['_modules']['mapping'])['state']['_modules']['fc0']
    del _meta(fc0)['state']['_parameters']['weight']
    with pytest.raises(ValueError, match=r"missing \['mapping.fc0.weight'\]"):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))

    record = W.persistent_object(G_ema, src)
    _meta(record)['state']['_buffers'] = {}
    _meta(_meta(record)['state']['_modules']['mapping'])['state']['_buffers']['w_avg'] = torch.zeros(5)
    with pytest.raises(ValueError, match=r'mapping.w_avg: expected shape \[16\], got \[5\]'):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))

    with pytest.raises(ValueError, match='expected a dict with G_ema'):
        _load_bytes(tmp_path, W.dumps({'G': None}))


def test_augment_pipe_dropped_with_warning_when_not_rebuildable(tmp_path, marker):
    _, _, G_ema = _sg3_nets()
    src = W.hostile_module_src(marker)
    pipe_meta = dict(type='class', version=6, module_src=src, class_name='AugmentPipe',
                     state=dict(training=True, _parameters={}, _buffers={'p': torch.zeros([])}, _modules={},
                                _init_args=(), _init_kwargs=dnnlib.EasyDict(no_such_option=1)))
    pipe = W.Reduce(W.Global('torch_utils.persistence', '_reconstruct_persistent_obj'), (pipe_meta,))
    data = W.network_pickle_bytes(None, None, G_ema, src, augment_pipe=pipe)
    with pytest.warns(RuntimeWarning, match='dropping the augment pipe'):
        out = _load_bytes(tmp_path, data)
    assert out['augment_pipe'] is None
    _assert_same_outputs(G_ema, out['G_ema'], n=1)


def test_augment_pipe_rebuilt_by_name(tmp_path, marker):
    augment = pytest.importorskip('training.augment')
    _, _, G_ema = _sg3_nets()
    bgc = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1,
               hue=1, saturation=1)
    pipe = augment.AugmentPipe(**bgc)
    pipe.p.fill_(0.375)
    src = W.hostile_module_src(marker)
    data = W.network_pickle_bytes(None, None, G_ema, src, augment_pipe=W.persistent_object(pipe, src))
    out = _load_bytes(tmp_path, data)
    assert type(out['augment_pipe']) is augment.AugmentPipe
    assert out['augment_pipe'].init_kwargs == bgc and float(out['augment_pipe'].p) == 0.375


def test_numpy_arrays_and_object_dtypes(tmp_path, marker):
    import numpy as np
    _, _, G_ema = _sg3_nets()
    src = W.hostile_module_src(marker)
    tsk = dict(path='x.zip', mean=np.arange(6, dtype=np.float32).reshape(2, 3), count=np.int64(7))
    out = _load_bytes(tmp_path, W.network_pickle_bytes(None, None, G_ema, src, training_set_kwargs=tsk))
    assert np.array_equal(out['training_set_kwargs']['mean'], tsk['mean']) and out['training_set_kwargs']['count'] == 7
    tsk = dict(path='x.zip', objects=np.array([{'a': 1}, None], dtype=object))
    with pytest.raises(ValueError, match='object dtype'):
        _load_bytes(tmp_path, W.network_pickle_bytes(None, None, G_ema, src, training_set_kwargs=tsk))


def test_legacy_converted_ada_kwargs(tmp_path, marker):
    # NVlabs legacy.py (TF -> PyTorch) writes every option explicitly, including layer-level ones.
    mapping_kwargs = dict(num_layers=2, embed_features=8, layer_features=12, activation='lrelu', lr_multiplier=0.01, w_avg_beta=0.995)
    synthesis_kwargs = dict(channel_base=256, channel_max=16, num_fp16_res=0, conv_clamp=None, architecture='skip',
                            resample_filter=[1, 3, 3, 1], use_noise=True, activation='lrelu')
    G = nets.Generator(z_dim=16, c_dim=2, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=mapping_kwargs, **synthesis_kwargs).eval()
    D = nets.Discriminator(c_dim=2, img_resolution=16, img_channels=3, architecture='resnet', channel_base=256, channel_max=16,
                           num_fp16_res=0, conv_clamp=None, cmap_dim=None,
                           block_kwargs=dict(activation='lrelu', resample_filter=[1, 3, 3, 1], freeze_layers=0),
                           mapping_kwargs=dict(num_layers=0, embed_features=None, layer_features=None, activation='lrelu', lr_multiplier=0.1),
                           epilogue_kwargs=dict(mbstd_group_size=2, mbstd_num_channels=1, activation='lrelu')).eval()
    root = dict(z_dim=16, c_dim=2, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs)
    out = _load_bytes(tmp_path, W.network_pickle_bytes(G, D, G, W.hostile_module_src(marker), variant='ada', G_root_kwargs=root))
    _assert_same_outputs(G, out['G_ema'], torch.eye(2)[[0, 1]], n=2)
    img = G(torch.randn(2, 16), torch.eye(2), noise_mode='const')
    assert torch.equal(out['D'](img, torch.eye(2)), D(img, torch.eye(2)))
