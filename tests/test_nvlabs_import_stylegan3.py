"""NVlabs StyleGAN3 pickles (T, R, conditional) written by tests/nvlabs_pickle_writer.py in the layout of
shared/reference/nvlabs_stylegan3_facts.md load through the restricted unpickler into
training.networks_stylegan3 without running their embedded source, reproduce the modules they were
written from bit for bit, and hostile or inconsistent variants are refused. ganforge snapshots of
StyleGAN3 networks are plain data."""

import io

import numpy as np
import pytest
import torch

import dnnlib
from tests import nvlabs_pickle_writer as W
from torch_utils import snapshot
from training import network_loader, nvlabs_pickle
from training import networks_stylegan2 as sg2
from training import networks_stylegan3 as sg3

pytestmark = pytest.mark.usefixtures('one_thread')

ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'), ('dnnlib.util', 'EasyDict'), ('numpy', 'dtype'), ('numpy', 'ndarray'),
    ('torch._utils', '_rebuild_parameter'), ('torch._utils', '_rebuild_tensor_v2'), ('torch.storage', '_load_from_bytes'),
    ('torch_utils.persistence', '_reconstruct_persistent_obj'), ('builtins', 'set'),
    ('numpy._core.multiarray', 'scalar'), ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', '_reconstruct'), ('numpy.core.multiarray', '_reconstruct'),
}


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / 'MARKER_module_src_ran'
    yield path
    assert not path.exists(), 'the embedded module source (or a hostile reduce) was executed'


def _nets(cfg='t', c_dim=0):
    """Small G, D, G_ema as NVlabs train.py builds them for --cfg=stylegan3-{t,r} (channels scaled down)."""
    G_kwargs = dict(z_dim=16, w_dim=16, mapping_kwargs=dnnlib.EasyDict(num_layers=2), channel_base=256, channel_max=16,
                    magnitude_ema_beta=0.5 ** (32 / 20000))
    if cfg == 'r':
        G_kwargs.update(conv_kernel=1, channel_base=512, channel_max=32, use_radial_filters=True)
    common = dict(c_dim=c_dim, img_resolution=16, img_channels=3)
    torch.manual_seed(2)
    G = sg3.Generator(**G_kwargs, **common)
    D = sg2.Discriminator(block_kwargs=dnnlib.EasyDict(), mapping_kwargs=dnnlib.EasyDict(), epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4),
                          channel_base=256, channel_max=16, **common)
    G_ema = sg3.Generator(**G_kwargs, **common)
    with torch.no_grad():  # trained-looking running statistics
        for g in (G, G_ema):
            g.mapping.w_avg.normal_()
            for name in g.synthesis.layer_names:
                getattr(g.synthesis, name).magnitude_ema.uniform_(0.5, 2)
    return G.eval(), D.eval(), G_ema.eval()


def _write(G, D, G_ema, marker, **kwargs):
    return W.network_pickle_bytes(G, D, G_ema, W.stylegan3_module_src(marker), D_module_src=W.hostile_module_src(marker), **kwargs)


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


def _assert_identical(src, dst, nvlabs=True):
    # The NVlabs importer makes D's fp16/clamp defaults explicit (num_fp16_res as the count of fp16 blocks).
    extra = dict(num_fp16_res=2, conv_clamp=256) if nvlabs and isinstance(src, sg2.Discriminator) else {}
    assert type(dst) is type(src) and dst.init_kwargs == dict(src.init_kwargs, **extra)
    a, b = src.state_dict(), dst.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@torch.no_grad()  # both on the same path of filtered_lrelu (without autograd it takes a faster route, equal to rounding)
def _assert_same_images(src_G, loaded_G, c=None, n=3):
    z = torch.randn(n, src_G.z_dim)
    for psi, cutoff in ((1, None), (0.7, None), (0.5, 4)):
        assert torch.equal(src_G(z, c, truncation_psi=psi, truncation_cutoff=cutoff), loaded_G(z, c, truncation_psi=psi, truncation_cutoff=cutoff))
    m = torch.tensor([[np.cos(0.4), np.sin(0.4), 0.1], [-np.sin(0.4), np.cos(0.4), -0.2], [0, 0, 1]], dtype=torch.float32)
    for g in (src_G, loaded_G):
        g.synthesis.input.transform.copy_(torch.linalg.inv(m))
    assert torch.equal(src_G(z, c), loaded_G(z, c))
    for g in (src_G, loaded_G):
        g.synthesis.input.transform.copy_(torch.eye(3))

#----------------------------------------------------------------------------

@pytest.mark.parametrize('cfg,c_dim', [('t', 0), ('r', 0), ('t', 3)], ids=['T', 'R', 'T-conditional'])
def test_stylegan3_pickle_loads_bit_for_bit(tmp_path, marker, cfg, c_dim):
    G, D, G_ema = _nets(cfg, c_dim)
    tsk = dict(class_name='training.dataset.ImageFolderDataset', path='afhq.zip', use_labels=c_dim > 0, max_size=100, xflip=True,
               resolution=16, random_seed=0)
    data = _write(G, D, G_ema, marker, training_set_kwargs=tsk)
    assert _globals_of(data) <= ALLOWED_GLOBALS
    out = _load_bytes(tmp_path, data)
    assert out['format'] == 'nvlabs-pickle' and out['training_set_kwargs'] == tsk
    assert type(out['G_ema']) is sg3.Generator and type(out['D']) is sg2.Discriminator
    for key, src in (('G', G), ('D', D), ('G_ema', G_ema)):
        _assert_identical(src, out[key])
        assert not out[key].training
    if cfg == 'r':
        assert out['G_ema'].synthesis.L0_36_32.down_filter.shape == (12, 12)  # radial filters came from the pickle
    c = torch.eye(3)[[0, 2, 1]] if c_dim else None
    _assert_same_images(G_ema, out['G_ema'], c)
    img = G(torch.randn(4, 16), torch.eye(3)[[0, 1, 2, 0]] if c_dim else None)
    c4 = torch.eye(3)[[0, 1, 2, 0]] if c_dim else None
    assert torch.equal(out['D'](img, c4), D(img, c4))


def test_protocol2_stylegan3_pickle(tmp_path, marker):
    _, _, G_ema = _nets('r')
    out = _load_bytes(tmp_path, _write(None, None, G_ema, marker, protocol=2))
    _assert_identical(G_ema, out['G_ema'])

#----------------------------------------------------------------------------
# Refusals.

def _meta(record):
    return record.args[0]


def _layer_meta(record, layer_name):
    synthesis = _meta(_meta(record)['state']['_modules']['synthesis'])
    return _meta(synthesis['state']['_modules'][layer_name])


def _g_record(G_ema, marker):
    return W.persistent_object(G_ema, W.stylegan3_module_src(marker))


@pytest.mark.parametrize('attr,value,match', [
    ('padding', [9, 8, 9, 9], r'L1_36_16\.padding: pickled \[9, 8, 9, 9\]'),
    ('in_cutoff', np.float64(2.5), r'L1_36_16\.in_cutoff'),
    ('down_radial', True, r'L1_36_16\.down_radial'),
    ('out_size', np.array([36, 37]), r'L1_36_16\.out_size'),
    ('up_factor', 4, r'L1_36_16\.up_factor'),
])
def test_inconsistent_layer_design_refused(tmp_path, marker, attr, value, match):
    _, _, G_ema = _nets('t')
    record = _g_record(G_ema, marker)
    _layer_meta(record, 'L1_36_16')['state'][attr] = value
    with pytest.raises(ValueError, match=match):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))


def test_bad_tensors_and_classes_refused(tmp_path, marker):
    _, D, G_ema = _nets('t')
    record = _g_record(G_ema, marker)
    _layer_meta(record, 'L2_36_16')['state']['_buffers']['down_filter'] = torch.zeros(12, 12)
    with pytest.raises(ValueError, match=r'L2_36_16\.down_filter: expected shape \[12\], got \[12, 12\]'):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))

    record = _g_record(G_ema, marker)
    del _layer_meta(record, 'L3_36_16')['state']['_buffers']['magnitude_ema']
    with pytest.raises(ValueError, match=r"missing \['synthesis.L3_36_16.magnitude_ema'\]"):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))

    record = _g_record(G_ema, marker)
    _meta(record)['class_name'] = 'SynthesisBlock'  # a StyleGAN2 class name in StyleGAN3 source
    with pytest.raises(ValueError, match=r"\(StyleGAN3\): unsupported NVlabs StyleGAN3 class 'SynthesisBlock'"):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))

    record = _g_record(G_ema, marker)
    _meta(_meta(record)['state']['_modules']['synthesis'])['state']['_modules']['input'] = None
    with pytest.raises(ValueError, match=r"missing \['synthesis\.input\.weight'"):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))

    # A StyleGAN2 discriminator record claiming StyleGAN3 source is not rebuilt as anything.
    record = W.persistent_object(D, W.stylegan3_module_src(marker))
    with pytest.raises(ValueError, match="StyleGAN3 class 'Discriminator'"):
        _load_bytes(tmp_path, W.dumps({'G_ema': _g_record(G_ema, marker), 'D': record}))

    # StyleGAN3 records whose kwargs are StyleGAN2 ones fail to construct, naming the class.
    record = _g_record(G_ema, marker)
    _meta(record)['state']['_init_kwargs']['architecture'] = 'skip'
    with pytest.raises(ValueError, match=r"cannot construct training\.networks_stylegan3\.Generator.*architecture"):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))


def test_hostile_global_in_stylegan3_state_refused(tmp_path, marker):
    _, _, G_ema = _nets('r')
    record = _g_record(G_ema, marker)
    _layer_meta(record, 'L0_36_32')['state']['evil'] = W.Reduce(W.Global('builtins', 'exec'), (f"open({str(marker)!r}, 'w')",))
    with pytest.raises(ValueError, match=r'global builtins\.exec'):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))
    record = _g_record(G_ema, marker)
    _meta(_meta(record)['state']['_modules']['synthesis'])['state']['size'] = W.Reduce(W.Global('numpy', 'load'), (str(marker),))
    with pytest.raises(ValueError, match=r'global numpy\.load'):
        _load_bytes(tmp_path, W.dumps({'G_ema': record}))

#----------------------------------------------------------------------------

def test_ganforge_snapshot_of_stylegan3_is_plain_data(tmp_path):
    G, D, G_ema = _nets('r', c_dim=3)
    path = tmp_path / 'network-snapshot.pt'
    snapshot.save_snapshot(str(path), G=G, D=D, G_ema=G_ema, cur_nimg=64)
    torch.load(str(path), map_location='cpu', weights_only=True)  # no code, no pickled classes
    out = network_loader.load_network(str(path))
    for key, src in (('G', G), ('D', D), ('G_ema', G_ema)):
        _assert_identical(src, out[key], nvlabs=False)
    _assert_same_images(G_ema, out['G_ema'].eval(), torch.eye(3)[[2, 0]], n=2)


def test_generate_from_stylegan3_pickle_matches_direct_evaluation(tmp_path, marker):
    # generate.py on an NVlabs StyleGAN3-R conditional pickle: NVlabs gen_images conventions written out
    # (z = RandomState(seed).randn(1, z_dim), one-hot c, one seed per forward, uint8 quantization).
    import PIL.Image
    from click.testing import CliRunner
    import generate
    G, _, G_ema = _nets('r', c_dim=3)
    pkl = tmp_path / 'stylegan3-r.pkl'
    pkl.write_bytes(_write(None, None, G_ema, marker))
    res = CliRunner().invoke(generate.cli, [f'--network={pkl}', '--seeds=4,9', '--class=1', '--trunc=0.6', f'--outdir={tmp_path}/out',
                                            '--device=cpu'], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for seed in (4, 9):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, 16)).float()
        img = G_ema(z, torch.eye(3)[[1]], truncation_psi=0.6, noise_mode='const')
        expected = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
        assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'out' / f'seed{seed:04d}.png')), expected)
