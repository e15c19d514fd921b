"""Bounds before work on files and URLs a user hands us: memo bombs and deep nesting in NVlabs pickles,
network sizes in .pt snapshots and NVlabs pickles checked against the stored tensors before anything is
allocated, URL connect/read timeouts, and crafted dataset-statistics cache files recomputed."""

import io
import json
import os
import pickle
import socket
import sys
import threading
import tracemalloc
import zipfile

import click
import numpy as np
import pytest
import torch

import dnnlib
from metrics import metric_utils
from tests import metrics_fixtures as mf
from tests import nvlabs_pickle_writer as W
from torch_utils import misc
from torch_utils import persistence
from torch_utils import snapshot
from training import network_loader, nvlabs_pickle
from training import networks_stylegan2 as nets


pytestmark = pytest.mark.usefixtures('one_thread')

#----------------------------------------------------------------------------
# NVlabs pickles: memo index and nesting.

def test_memo_bomb_refused_in_bounded_memory():
    # PROTO 2, NONE, LONG_BINPUT 2**31 - 1, STOP: the C unpickler would size its memo for 2**31 entries.
    bomb = b'\x80\x02Nr\xff\xff\xff\x7f.'
    assert len(bomb) == 9
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r'bomb\.pkl: cannot load NVlabs pickle: bomb\.pkl: refusing to load: memo index 2147483647'):
            nvlabs_pickle.load_nvlabs_pickle(bomb, 'bomb.pkl')
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # unchecked, the C unpickler sizes its memo for 2**31 entries (gigabytes)


def test_memo_get_of_unwritten_index_refused():
    data = b'\x80\x02h\x05.'  # BINGET 5 before any PUT
    with pytest.raises(ValueError, match='memo index 5'):
        nvlabs_pickle.load_nvlabs_pickle(data, 'get.pkl')


def test_deep_nesting_refused_with_a_clear_error():
    nested = []
    for _ in range(snapshot.MAX_NESTING + 5):
        nested = [nested]
    data = pickle.dumps({'G_ema': None, 'training_set_kwargs': {'path': nested}}, protocol=2)
    with pytest.raises(ValueError, match=rf'deep\.pkl: refusing to load: containers nested more than {snapshot.MAX_NESTING} deep'):
        nvlabs_pickle.load_nvlabs_pickle(data, 'deep.pkl')
    shallow = pickle.dumps({'G_ema': None, 'training_set_kwargs': {'path': [[[[1]]]]}}, protocol=2)
    with pytest.raises(ValueError, match='not an NVlabs network pickle'):  # nesting fine; then no G_ema
        nvlabs_pickle.load_nvlabs_pickle(shallow, 'shallow.pkl')


def test_deeply_nested_snapshot_refused(tmp_path):
    G, D = _tiny_nets()
    data = snapshot.make_snapshot(G=G, D=D, G_ema=G)
    nested = dict()
    for _ in range(snapshot.MAX_NESTING + 5):
        nested = dict(path=nested)
    data['training_set_kwargs'] = nested
    torch.save(data, tmp_path / 'deep.pt')
    with pytest.raises(ValueError, match=rf'deep\.pt: refusing to load: containers nested more than {snapshot.MAX_NESTING} deep'):
        network_loader.load_network(str(tmp_path / 'deep.pt'))


def test_self_referencing_container_refused():
    loop = []
    loop.append(loop)
    data = pickle.dumps({'G_ema': None, 'training_set_kwargs': {'path': loop}}, protocol=2)
    with pytest.raises(ValueError, match=r'loop\.pkl: refusing to load: a container in the file contains itself'):
        nvlabs_pickle.load_nvlabs_pickle(data, 'loop.pkl')

#----------------------------------------------------------------------------
# Network sizes checked against stored tensors before allocation.

BUILDS = []


@persistence.persistent_class
class BufferNet(torch.nn.Module):
    """Records the tensor type of each construction (FakeTensor for the size check, Tensor for real)."""

    def __init__(self, n, unstored=0):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros([n]))
        self.register_buffer('scratch', torch.zeros([unstored]), persistent=False)
        BUILDS.append(type(self.weight.data).__name__)


def _tiny_nets():
    G = nets.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, channel_base=64, channel_max=8,
                       mapping_kwargs=dnnlib.EasyDict(num_layers=1))
    D = nets.Discriminator(c_dim=0, img_resolution=8, img_channels=3, channel_base=64, channel_max=8)
    return G.eval(), D.eval()


def test_huge_kwargs_snapshot_refused_before_allocating(tmp_path):
    G, D = _tiny_nets()
    data = snapshot.make_snapshot(G=G, D=D, G_ema=G)
    data['G_ema']['init_kwargs'].update(channel_base=1 << 40, channel_max=1 << 20)  # terabytes of weights
    torch.save(data, tmp_path / 'huge.pt')
    assert os.path.getsize(tmp_path / 'huge.pt') < 1 << 20
    with pytest.raises(ValueError, match=r'huge\.pt: G_ema: .*expected shape \[1048576'):
        network_loader.load_network(str(tmp_path / 'huge.pt'))


def test_unstored_buffers_bounded_and_only_fake_builds_before_refusal(tmp_path):
    net = BufferNet(n=4)
    BUILDS.clear()
    record = snapshot.module_to_record(net)
    record['init_kwargs']['unstored'] = snapshot.MAX_UNSTORED_ELEMENTS + 1000
    with pytest.raises(ValueError, match=r'would hold \d+ elements, \d+ more than the file stores .*refusing to allocate'):
        snapshot.record_to_module(record)
    assert BUILDS == ['FakeTensor']  # never built for real
    record['init_kwargs']['unstored'] = 16
    assert snapshot.record_to_module(record).scratch.shape == (16,)
    assert BUILDS == ['FakeTensor', 'FakeTensor', 'Tensor']


@persistence.persistent_class
class ConstantNet(torch.nn.Module):
    """Builds a buffer from the process-wide constant cache (as filters are built)."""

    def __init__(self):
        super().__init__()
        self.register_buffer('f', misc.constant([0.125, 7.5, 3.25]).clone())


def test_size_check_leaves_no_fake_tensor_in_the_constant_cache():
    record = snapshot.module_to_record(ConstantNet())
    misc._constant_cache.clear()
    net = snapshot.record_to_module(record)
    assert type(net.f) is torch.Tensor and net.f.tolist() == [0.125, 7.5, 3.25]
    assert all(type(t) is torch.Tensor for t in misc._constant_cache.values())
    assert type(misc.constant([0.125, 7.5, 3.25])) is torch.Tensor


def test_expanded_view_does_not_pass_as_stored_data():
    # A stored tensor of 2**26 elements that is a stride-0 view of one element: the file holds 4 bytes.
    net = BufferNet(n=4)
    record = snapshot.module_to_record(net)
    n = snapshot.MAX_UNSTORED_ELEMENTS * 4
    record['init_kwargs']['n'] = n
    record['state_dict']['weight'] = torch.zeros([1]).expand(n)
    with pytest.raises(ValueError, match='more than the file stores'):
        snapshot.record_to_module(record)


def test_nvlabs_pickle_with_huge_kwargs_refused(tmp_path):
    G, D = _tiny_nets()
    kwargs = dict(G.init_kwargs, channel_base=1 << 40, channel_max=1 << 20)
    data = W.network_pickle_bytes(G, D, G, 'class Generator: pass', G_root_kwargs=kwargs)
    with pytest.raises(ValueError, match=r'huge\.pkl: G: .*expected shape \[1048576'):
        network_loader.load_network_bytes(data, 'huge.pkl')
    ok = W.network_pickle_bytes(G, D, G, 'class Generator: pass')
    out = network_loader.load_network_bytes(ok, 'ok.pkl')
    z = torch.randn([2, 8])
    torch.testing.assert_close(out['G_ema'](z, None, noise_mode='const'), G(z, None, noise_mode='const'))

#----------------------------------------------------------------------------
# URL timeouts.

@pytest.fixture
def silent_server():
    """A localhost server that accepts connections and never answers."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(('127.0.0.1', 0))
    srv.listen(4)
    conns, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{srv.getsockname()[1]}/inception.pkl'
    stop.set()
    thread.join()
    for c in conns:
        c.close()
    srv.close()


def test_silent_server_times_out_with_the_url(silent_server, tmp_path, monkeypatch):
    monkeypatch.setenv(dnnlib.util.URL_TIMEOUT_ENV, '0.5')
    with pytest.raises(dnnlib.util.URLTimeoutError) as e:
        dnnlib.util.open_url(silent_server, cache_dir=str(tmp_path), verbose=False)
    assert silent_server in str(e.value) and 'within 0.5 s' in str(e.value) and dnnlib.util.URL_TIMEOUT_ENV in str(e.value)
    assert os.listdir(tmp_path) == []  # nothing half-written in the cache


def test_timeout_argument_and_defaults(silent_server, monkeypatch):
    monkeypatch.delenv(dnnlib.util.URL_TIMEOUT_ENV, raising=False)
    assert dnnlib.util.url_timeout() == 30
    with pytest.raises(dnnlib.util.URLTimeoutError, match='within 0.25 s'):
        dnnlib.util.open_url(silent_server, cache=False, verbose=False, timeout=0.25)
    for bad in ('0', '-1', 'nan', 'inf', 'soon'):
        monkeypatch.setenv(dnnlib.util.URL_TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=dnnlib.util.URL_TIMEOUT_ENV):
            dnnlib.util.url_timeout()

#----------------------------------------------------------------------------
# Dataset-statistics cache files with crafted headers are recomputed.

def _write_npz(path, header, **arrays):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode('utf-8')
    np.savez(path, header=np.frombuffer(raw, dtype=np.uint8), **arrays)


def _good_header(meta, f=4, n=3):
    return dict(capture_all=False, capture_mean_cov=True, max_items=None, num_items=n, num_features=f, meta=meta)


CRAFTED = {
    'json list': lambda meta: ([1, 2, 3], {}),
    'json string': lambda meta: ('x', {}),
    'num_features string': lambda meta: (dict(_good_header(meta), num_features='4'), dict(raw_mean=np.zeros(4), raw_cov=np.zeros([4, 4]))),
    'num_items bool': lambda meta: (dict(_good_header(meta), num_items=True), dict(raw_mean=np.zeros(4), raw_cov=np.zeros([4, 4]))),
    'capture flag int': lambda meta: (dict(_good_header(meta), capture_mean_cov=1), dict(raw_mean=np.zeros(4), raw_cov=np.zeros([4, 4]))),
    'missing field': lambda meta: ({k: v for k, v in _good_header(meta).items() if k != 'max_items'}, dict(raw_mean=np.zeros(4), raw_cov=np.zeros([4, 4]))),
    'wrong cov shape': lambda meta: (_good_header(meta), dict(raw_mean=np.zeros(4), raw_cov=np.zeros([4, 5]))),
    'wrong dtype': lambda meta: (_good_header(meta), dict(raw_mean=np.zeros(4, np.float32), raw_cov=np.zeros([4, 4]))),
    'huge num_features, no arrays': lambda meta: (dict(_good_header(meta), num_features=1 << 40), {}),
    'header not uint8': lambda meta: (b'{}', {}),
}


@pytest.mark.parametrize('case', sorted(CRAFTED))
def test_crafted_cache_header_is_an_error_not_a_crash(tmp_path, case):
    header, arrays = CRAFTED[case](None)
    path = str(tmp_path / 'stats.npz')
    _write_npz(path, header, **arrays)
    if case == 'header not uint8':
        np.savez(path, header=np.arange(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r'stats\.npz: '):
        metric_utils.FeatureStats.load(path)


def test_npz_member_declaring_more_than_it_holds(tmp_path):
    # numpy allocates the declared shape before reading a zip member: 128 TB here, from a file of 1 KB.
    path = tmp_path / 'stats.npz'
    _write_npz(str(path), _good_header(None), raw_mean=np.zeros(4))
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, dict(descr='<f8', fortran_order=False, shape=(4, 4000000000000)))
    member.write(bytes(128))
    with zipfile.ZipFile(path, 'a') as zf:
        zf.writestr('raw_cov.npy', member.getvalue())
    with pytest.raises(ValueError, match=r'raw_cov\.npy: declares float64 \[4, 4000000000000\]'):
        metric_utils.FeatureStats.load(str(path))


@pytest.mark.parametrize('case', ['json list', 'num_features string', 'wrong cov shape', 'huge num_features, no arrays'])
def test_crafted_cache_is_recomputed(tmp_path, monkeypatch, case, capsys):
    monkeypatch.setenv('GANFORGE_CACHE_DIR', str(tmp_path / 'cache'))
    ds = mf.make_tiny_dataset(str(tmp_path / 'tiny.npz'), num_images=12)
    det = str(tmp_path / 'det')
    mf.write_detectors(det)
    opts = metric_utils.MetricOptions(dataset_kwargs=dict(class_name='tests.metrics_fixtures.TinyDataset', path=ds), device='cpu',
                                      detector_dir=det, batch_size=16, data_loader_kwargs=dict(num_workers=0))
    compute = lambda: metric_utils.compute_feature_stats_for_dataset(opts, 'inception-2015-12-05', dict(return_features=True),
                                                                     capture_mean_cov=True)
    first = compute()
    (path,) = [tmp_path / 'cache' / 'gan-metrics' / f for f in os.listdir(tmp_path / 'cache' / 'gan-metrics')]
    with np.load(path) as data:
        meta = json.loads(bytes(data['header']).decode('utf-8'))['meta']
    header, arrays = CRAFTED[case](meta)
    _write_npz(str(path), header, **arrays)
    capsys.readouterr()
    again = compute()
    assert 'Ignoring dataset statistics cache' in capsys.readouterr().err
    np.testing.assert_array_equal(again.get_mean_cov()[1], first.get_mean_cov()[1])
    assert metric_utils.FeatureStats.load(str(path), expected_meta=meta).num_items == 12  # rewritten

#----------------------------------------------------------------------------
# A file naming a class: only registered classes, never an arbitrary import.

@pytest.fixture
def importable_marker(tmp_path, monkeypatch):
    """A module `h2_import_marker` on sys.path that writes a marker file when imported."""
    marker = tmp_path / 'imported'
    (tmp_path / 'h2_import_marker.py').write_text(f'open({str(marker)!r}, "w").close()\nclass X:\n    pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    assert 'h2_import_marker' not in sys.modules
    assert not marker.exists()


def test_snapshot_naming_an_unregistered_dataset_class_is_refused(tmp_path, importable_marker):
    import calc_metrics
    from click.testing import CliRunner
    G = mf.TinyGenerator()
    snap = dict(training_set_kwargs=dict(class_name='h2_import_marker.X', path='x'))
    with pytest.raises(click.BadParameter, match=r"evil\.pt: training_set_kwargs\.class_name: Unknown dataset class "
                                                 r"'h2_import_marker\.X'.*tests\.metrics_fixtures\.TinyDataset.*training\.dataset\.ImageFolderDataset"):
        calc_metrics.dataset_kwargs_for(G, snap, None, None, 'evil.pt')
    for name in ('training.no_such_module.X', 'training.dataset.Dataset', 'training.dataset.os', 'dnnlib.util.EasyDict'):
        with pytest.raises(click.BadParameter, match='class_name'):
            calc_metrics.dataset_kwargs_for(G, dict(training_set_kwargs=dict(class_name=name)), None, None, 'evil.pt')
    ok = calc_metrics.dataset_kwargs_for(G, dict(training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path='d')),
                                         None, None, 'ok.pt')
    assert ok.class_name == 'training.dataset.ImageFolderDataset' and ok.resolution == 8

    # Through the command line, from a ganforge snapshot and from an NVlabs pickle.
    ds = mf.make_tiny_dataset(str(tmp_path / 'tiny.npz'), num_images=8)
    det = str(tmp_path / 'det')
    mf.write_detectors(det)
    snapshot.save_snapshot(str(tmp_path / 'evil.pt'), G=None, D=None, G_ema=G, training_set_kwargs=dict(class_name='h2_import_marker.X', path=ds))
    Gn, Dn = _tiny_nets()
    (tmp_path / 'evil.pkl').write_bytes(W.network_pickle_bytes(Gn, Dn, Gn, 'src', variant='ada',
                                                               training_set_kwargs=dict(class_name='h2_import_marker.X', path=ds)))
    for path in ('evil.pt', 'evil.pkl'):
        result = CliRunner().invoke(calc_metrics.main, ['--network', str(tmp_path / path), '--metrics', 'fid1k_full',
                                                        '--detector-dir', det, '--quiet'])
        assert "Unknown dataset class 'h2_import_marker.X'" in result.output


def test_registry_kinds_are_separate():
    assert persistence.lookup_class('tests.metrics_fixtures.TinyDataset', kind='dataset') is mf.TinyDataset
    with pytest.raises(ValueError, match='Unknown network class'):
        persistence.lookup_class('tests.metrics_fixtures.TinyDataset')  # a dataset is not a network
    with pytest.raises(ValueError, match='Unknown dataset class'):
        persistence.lookup_class('training.networks_stylegan2.Generator', kind='dataset')
    assert mf.TinyDataset in persistence.registered_classes('dataset')
