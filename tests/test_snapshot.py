"""ganforge snapshots: plain-data records, bit-identical round trip, weights_only loading, and refusal
of snapshots that name anything but a ganforge persistent class."""

import os

import pytest
import torch

import dnnlib
from torch_utils import persistence
from torch_utils import snapshot
from training import network_loader
from training import networks_stylegan2 as nets


pytestmark = pytest.mark.usefixtures('one_thread')


def _nets(c_dim=0, freeze_layers=0):
    G = nets.Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
                       mapping_kwargs=dnnlib.EasyDict(num_layers=2), num_fp16_res=2)
    D = nets.Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
                           block_kwargs=dnnlib.EasyDict(freeze_layers=freeze_layers), epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=2))
    G_ema = nets.Generator(**G.init_kwargs)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(16))
        for m in list(G.modules()) + list(G_ema.modules()):
            if isinstance(m, nets.SynthesisLayer):
                m.noise_strength.fill_(0.2)
        G_ema.mapping.w_avg.copy_(torch.randn(16))
    return G, D, G_ema


def test_module_record_is_plain_data():
    G, _, _ = _nets()
    rec = snapshot.module_to_record(G)
    assert rec['class_name'] == 'training.networks_stylegan2.Generator'
    assert type(rec['init_kwargs']['mapping_kwargs']) is dict  # EasyDict converted
    assert rec['init_args'] == ()
    assert set(rec['state_dict']) == set(G.state_dict())
    assert all(t.device.type == 'cpu' and not t.requires_grad for t in rec['state_dict'].values())
    with pytest.raises(TypeError, match='persistent_class'):
        snapshot.module_to_record(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"extra\['f'\]"):
        snapshot.to_plain({'f': lambda: 0}, 'extra')


def test_round_trip_bit_identical(tmp_path):
    G, D, G_ema = _nets(c_dim=2, freeze_layers=2)
    tsk = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path='/data/x.zip', resolution=16,
                          xflip=dnnlib.EasyDict(enabled=True))
    path = tmp_path / 'network-snapshot-000123.pt'
    snapshot.save_snapshot(path, G=G, D=D, G_ema=G_ema, training_set_kwargs=tsk, cur_nimg=123000, extra={'note': 'hi'})
    assert sorted(os.listdir(tmp_path)) == ['network-snapshot-000123.pt']  # no temporary left behind

    rng = torch.random.get_rng_state()
    out = network_loader.load_network(str(path))
    assert torch.equal(torch.random.get_rng_state(), rng)  # rebuilding does not consume the caller's RNG
    assert out['format'] == 'ganforge-snapshot' and out['cur_nimg'] == 123000
    assert out['training_set_kwargs'] == {'class_name': 'training.dataset.ImageFolderDataset', 'path': '/data/x.zip',
                                          'resolution': 16, 'xflip': {'enabled': True}}
    assert out['augment_pipe'] is None
    for key, src in (('G', G), ('D', D), ('G_ema', G_ema)):
        mod = out[key]
        assert type(mod) is type(src) and not mod.training
        assert not any(p.requires_grad for p in mod.parameters())
        for (k, a), (k2, b) in zip(src.state_dict().items(), mod.state_dict().items()):
            assert k == k2 and torch.equal(a, b)
    assert 'b16.fromrgb.weight' in dict(out['D'].named_buffers())

    z, c = torch.randn(4, 16), torch.eye(2)[[0, 1, 1, 0]]
    G_ema.eval()
    for psi in (1, 0.7):
        assert torch.equal(out['G_ema'](z, c, truncation_psi=psi, noise_mode='const'), G_ema(z, c, truncation_psi=psi, noise_mode='const'))
    img = G(z, c, noise_mode='const')
    assert torch.equal(out['D'](img, c), D(img, c))


def test_snapshot_loads_with_weights_only(tmp_path):
    G, D, G_ema = _nets()
    path = tmp_path / 'snap.pt'
    snapshot.save_snapshot(path, G=G, D=D, G_ema=G_ema, cur_nimg=5)
    data = torch.load(path, weights_only=True)
    assert data['format'] == 'ganforge-snapshot' and data['version'] == 1
    assert set(data) >= {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs', 'cur_nimg'}
    assert data['G_ema']['class_name'] == 'training.networks_stylegan2.Generator'
    # record_to_module rebuilds from the plain records.
    G2 = snapshot.record_to_module(data['G'])
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))


def test_training_state_file_loads(tmp_path):
    G, D, G_ema = _nets()
    state = snapshot.make_snapshot(G=G, D=D, G_ema=G_ema, cur_nimg=64)
    state.update(format='ganforge-training-state', optimizers={'G': {'state': {}}}, ada_p=0.25)
    torch.save(state, tmp_path / 'training-state-000000.pt')
    out = network_loader.load_network(str(tmp_path / 'training-state-000000.pt'))
    assert out['cur_nimg'] == 64 and isinstance(out['G_ema'], nets.Generator)


@pytest.mark.parametrize('class_name', ['os.system', 'builtins.eval', 'torch.nn.Linear', 'training.networks_stylegan2.np',
                                        'training.no_such_module.Evil', 'training.networks_stylegan2.os.system'])
def test_hostile_class_name_refused(tmp_path, class_name):
    G, D, G_ema = _nets()
    data = snapshot.make_snapshot(G=G, D=D, G_ema=G_ema)
    data['G_ema']['class_name'] = class_name
    data['G_ema']['init_args'] = ('touch ' + str(tmp_path / 'marker'),)
    torch.save(data, tmp_path / 'evil.pt')
    with pytest.raises(ValueError, match='Unknown network class'):
        network_loader.load_network(str(tmp_path / 'evil.pt'))
    assert not (tmp_path / 'marker').exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_non_plain_snapshot_refused(tmp_path):
    G, D, G_ema = _nets()
    data = snapshot.make_snapshot(G=G, D=D, G_ema=G_ema)
    data['extra'] = _Evil(tmp_path / 'marker')
    torch.save(data, tmp_path / 'evil.pt')
    with pytest.raises(ValueError, match='not plain data'):
        network_loader.load_network(str(tmp_path / 'evil.pt'))
    assert not (tmp_path / 'marker').exists()


def test_bad_snapshots_named_errors(tmp_path):
    G, D, G_ema = _nets()
    data = snapshot.make_snapshot(G=G, D=D, G_ema=G_ema)
    data['G_ema']['state_dict']['mapping.w_avg'] = torch.zeros(7)
    torch.save(data, tmp_path / 'shape.pt')
    with pytest.raises(ValueError, match=r'mapping.w_avg: expected shape \[16\], got \[7\]'):
        network_loader.load_network(str(tmp_path / 'shape.pt'))

    data = snapshot.make_snapshot(G=G, D=D, G_ema=G_ema)
    del data['G_ema']['state_dict']['synthesis.b4.const']
    torch.save(data, tmp_path / 'missing.pt')
    with pytest.raises(ValueError, match='missing.*synthesis.b4.const'):
        network_loader.load_network(str(tmp_path / 'missing.pt'))

    data = snapshot.make_snapshot(G=G, D=D, G_ema=G_ema)
    data['version'] = 99
    torch.save(data, tmp_path / 'new.pt')
    with pytest.raises(ValueError, match='newer'):
        network_loader.load_network(str(tmp_path / 'new.pt'))

    torch.save({'format': 'something-else'}, tmp_path / 'other.pt')
    with pytest.raises(ValueError, match='not a ganforge snapshot'):
        network_loader.load_network(str(tmp_path / 'other.pt'))
    good = tmp_path / 'good.pt'
    snapshot.save_snapshot(good, G=G, D=D, G_ema=G_ema)
    (tmp_path / 'truncated.pt').write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ValueError, match='corrupt or truncated'):
        network_loader.load_network(str(tmp_path / 'truncated.pt'))
    (tmp_path / 'junk.bin').write_bytes(b'hello')
    with pytest.raises(ValueError, match='not a ganforge snapshot'):
        network_loader.load_network(str(tmp_path / 'junk.bin'))
    with pytest.raises(FileNotFoundError):
        network_loader.load_network(str(tmp_path / 'absent.pt'))


def test_lookup_only_decorated_classes():
    assert persistence.lookup_class('training.networks_stylegan2.Generator') is nets.Generator
    with pytest.raises(ValueError):
        persistence.lookup_class('training.networks_stylegan2.normalize_2nd_moment')


def test_extra_state_round_trip(tmp_path):
    # Modules with get_extra_state() (e.g. the progressive-growing wrappers) keep it as plain data.
    progressive = pytest.importorskip('training.progressive')
    G = progressive.ProgressiveGenerator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                                         channel_base=64, channel_max=8, mapping_kwargs=dict(num_layers=1))
    G.synthesis.set_lod(8, 0.25)
    rec = snapshot.module_to_record(G)
    assert rec['state_dict']['synthesis._extra_state'] == {'lod_res': 8, 'lod_alpha': 0.25}
    snapshot.save_snapshot(tmp_path / 's.pt', G=None, D=None, G_ema=G)
    G2 = network_loader.load_network(str(tmp_path / 's.pt'))['G_ema']
    assert (G2.synthesis.lod_res, G2.synthesis.lod_alpha) == (8, 0.25)


class _Payload:
    """torch.save() of this pickles a call to os.system: the file must be refused, not run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def _deeply_nested_pt(path, depth):
    """A valid torch.save zip whose data.pkl holds {'training_set_kwargs': [[[...]]]} nested `depth` deep
    (written as raw pickle opcodes: the recursive pickler could not write it)."""
    import io
    import zipfile
    buf = io.BytesIO()
    torch.save({'format': 'ganforge-snapshot'}, buf)
    pkl = b'\x80\x02}X\x13\x00\x00\x00training_set_kwargs' + b']' * depth + b'a' * (depth - 1) + b's.'
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(path, 'w') as dst:
        for name in src.namelist():
            dst.writestr(name, pkl if name.endswith('/data.pkl') else src.read(name))


def test_refused_content_is_told_apart_from_a_damaged_file(tmp_path):
    # A payload is "refused", a truncated file "corrupt": different classes, both ValueErrors naming the file.
    marker = tmp_path / 'marker'
    torch.save({'format': 'ganforge-snapshot', 'G_ema': _Payload(marker)}, tmp_path / 'payload.pt')
    with pytest.raises(snapshot.SnapshotRefusedError, match=r'payload\.pt: refused: holds objects that are not plain data'):
        snapshot.load_plain(str(tmp_path / 'payload.pt'), str(tmp_path / 'payload.pt'))
    with pytest.raises(snapshot.SnapshotRefusedError):
        network_loader.load_network(str(tmp_path / 'payload.pt'))
    assert not marker.exists()

    G, D, G_ema = _nets()
    snapshot.save_snapshot(tmp_path / 'good.pt', G=G, D=D, G_ema=G_ema)
    (tmp_path / 'cut.pt').write_bytes((tmp_path / 'good.pt').read_bytes()[:3000])
    with pytest.raises(snapshot.SnapshotCorruptError, match=r'cut\.pt: corrupt or truncated') as info:
        snapshot.load_plain(str(tmp_path / 'cut.pt'), str(tmp_path / 'cut.pt'))
    assert not isinstance(info.value, snapshot.SnapshotRefusedError)


def test_deep_nesting_is_refused_without_recursion_error(tmp_path):
    path = tmp_path / 'deep.pt'
    _deeply_nested_pt(path, 100_000)
    with pytest.raises(snapshot.SnapshotRefusedError, match=rf'deep\.pt: refusing to load: containers nested more than {snapshot.MAX_NESTING} deep'):
        network_loader.load_network(str(path))
    _deeply_nested_pt(path, snapshot.MAX_NESTING - 1)  # within the limit: read, then refused for what it is
    with pytest.raises(ValueError, match='not a ganforge snapshot') as info:
        network_loader.load_network(str(path))
    assert not isinstance(info.value, snapshot.SnapshotRefusedError)
