"""Metric pipeline: dataset-statistics cache (hit, miss on every option, corrupt file recomputed),
two gloo processes giving the numbers of one, the registry's name scheme and NVlabs-style reports."""

import json
import os
import tempfile

import numpy as np
import pytest
import torch

from metrics import detectors, frechet_inception_distance, inception_score, kernel_inception_distance, metric_main, metric_utils
from metrics import perceptual_path_length, precision_recall
from tests import metrics_fixtures as mf
from tests.metrics_fixtures import single_thread  # noqa: F401 (autouse fixture)

DATASET_CLASS = 'tests.metrics_fixtures.TinyDataset'

#----------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path, monkeypatch):
    """Tiny labelled dataset, stand-in detectors, and a private cache dir."""
    monkeypatch.setenv('GANFORGE_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('GANFORGE_DETECTOR_DIR', raising=False)
    ds = mf.make_tiny_dataset(str(tmp_path / 'tiny.npz'), num_images=40, num_classes=3)
    det = str(tmp_path / 'det')
    mf.write_detectors(det)
    return dict(tmp=tmp_path, dataset_kwargs=dict(class_name=DATASET_CLASS, path=ds), det=det)


def _opts(dataset_kwargs, det, num_gpus=1, rank=0, cache=True, G=None):
    return metric_utils.MetricOptions(G=G, dataset_kwargs=dataset_kwargs, num_gpus=num_gpus, rank=rank, device='cpu',
                                      cache=cache, detector_dir=det, batch_size=16, batch_gen=4,
                                      data_loader_kwargs=dict(num_workers=0))

#----------------------------------------------------------------------------
# Cache.

def test_dataset_stats_cache_hit_miss_and_corruption(env, monkeypatch):
    computed = []
    real_kwargs = metric_utils._data_loader_kwargs
    monkeypatch.setattr(metric_utils, '_data_loader_kwargs', lambda opts: computed.append(1) or real_kwargs(opts))

    def stats(dataset_kwargs=env['dataset_kwargs'], det=env['det'], max_items=None, **kw):
        kw = kw or dict(capture_mean_cov=True)
        return metric_utils.compute_feature_stats_for_dataset(_opts(dataset_kwargs, det), 'inception-2015-12-05',
                                                              dict(return_features=True), max_items=max_items, **kw)

    first = stats()
    assert len(computed) == 1
    cache_dir = env['tmp'] / 'cache' / 'gan-metrics'
    files = os.listdir(cache_dir)
    assert len(files) == 1 and files[0].startswith('tiny-inception-2015-12-05-') and files[0].endswith('.npz')

    # Hit: nothing recomputed, same numbers.
    second = stats()
    assert len(computed) == 1
    np.testing.assert_array_equal(second.get_mean_cov()[1], first.get_mean_cov()[1])

    # Every option that changes the statistics misses.
    stats(max_items=20)
    assert len(computed) == 2
    stats(dataset_kwargs=dict(env['dataset_kwargs'], xflip=True))
    assert len(computed) == 3
    stats(capture_all=True)
    assert len(computed) == 4
    other_det = str(env['tmp'] / 'det2')
    mf.write_detectors(other_det, inception_seed=9)
    stats(det=other_det)
    assert len(computed) == 5
    stats(dataset_kwargs=dict(env['dataset_kwargs'], resolution=8))
    assert len(computed) == 6
    stats(dataset_kwargs=dict(env['dataset_kwargs'], use_labels=True))  # labels do not change image features: hit
    assert len(computed) == 6
    os.utime(env['dataset_kwargs']['path'], ns=(1, 1))  # dataset file changed
    third = stats()
    assert len(computed) == 7
    np.testing.assert_array_equal(third.get_mean_cov()[0], first.get_mean_cov()[0])
    assert stats() is not None and len(computed) == 7
    assert len(os.listdir(cache_dir)) == 7

    # A corrupt cache file is recomputed (and rewritten), never trusted.
    newest = max((cache_dir / f for f in os.listdir(cache_dir)), key=os.path.getmtime)
    newest.write_bytes(b'PK\x03\x04 garbage')
    fourth = stats()
    assert len(computed) == 8
    np.testing.assert_array_equal(fourth.get_mean_cov()[1], first.get_mean_cov()[1])
    assert stats() is not None and len(computed) == 8


def test_cached_stats_from_another_key_are_rejected(env, monkeypatch):
    # A file at the right name whose embedded key differs (e.g. copied from elsewhere) is recomputed.
    computed = []
    real_kwargs = metric_utils._data_loader_kwargs
    monkeypatch.setattr(metric_utils, '_data_loader_kwargs', lambda opts: computed.append(1) or real_kwargs(opts))
    opts = _opts(env['dataset_kwargs'], env['det'])
    s = metric_utils.compute_feature_stats_for_dataset(opts, 'inception-2015-12-05', dict(return_features=True), capture_mean_cov=True)
    (path,) = [env['tmp'] / 'cache' / 'gan-metrics' / f for f in os.listdir(env['tmp'] / 'cache' / 'gan-metrics')]
    bogus = metric_utils.FeatureStats(capture_mean_cov=True)
    bogus.append(np.ones([3, s.num_features]))
    bogus.save(str(path), meta=dict(something='else'))
    again = metric_utils.compute_feature_stats_for_dataset(opts, 'inception-2015-12-05', dict(return_features=True), capture_mean_cov=True)
    assert len(computed) == 2
    np.testing.assert_array_equal(again.get_mean_cov()[0], s.get_mean_cov()[0])

#----------------------------------------------------------------------------
# Distributed: 2 gloo processes == 1 process.

def _all_metrics(num_gpus, rank, dataset_kwargs, det):
    torch.manual_seed(0)
    G = mf.TinyGenerator(c_dim=3)
    opts = _opts(dict(dataset_kwargs, use_labels=True), det, num_gpus=num_gpus, rank=rank, cache=False, G=G)
    gen = metric_utils.compute_feature_stats_for_generator(opts, 'inception-2015-12-05', dict(return_features=True),
                                                           capture_all=True, max_items=50).get_all()
    out = dict(
        fid=frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=100),
        fid_sub=frechet_inception_distance.compute_fid(opts, max_real=25, num_gen=37),
        fid_one=frechet_inception_distance.compute_fid(opts, max_real=1, num_gen=3),  # rank 1 holds no real item
        kid=kernel_inception_distance.compute_kid(opts, max_real=None, num_gen=100, num_subsets=10, max_subset_size=30),
        pr=precision_recall.compute_pr(opts, max_real=None, num_gen=100, nhood_size=3, row_batch_size=25, col_batch_size=7),
        is_=inception_score.compute_is(opts, num_gen=100, num_splits=10),
        ppl=perceptual_path_length.compute_ppl(opts, num_samples=21, epsilon=1e-4, space='w', sampling='end', crop=False, batch_size=2),
    )
    return out, gen


def _dist_worker(rank, num_gpus, init_file, out_file, dataset_kwargs, det):
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=num_gpus)
    try:
        out, gen = _all_metrics(num_gpus, rank, dataset_kwargs, det)
        if rank == 0:
            np.savez(out_file, gen=gen, out=json.dumps(out))
        else:
            assert np.isnan(out['fid']) and np.isnan(out['kid']) and np.isnan(out['ppl'])
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one(env):
    single, single_gen = _all_metrics(1, 0, env['dataset_kwargs'], env['det'])
    with tempfile.TemporaryDirectory() as tmp:
        out_file = os.path.join(tmp, 'out.npz')
        torch.multiprocessing.spawn(_dist_worker, args=(2, os.path.join(tmp, 'init'), out_file, env['dataset_kwargs'], env['det']), nprocs=2)
        with np.load(out_file) as data:
            dist_gen, dist = data['gen'], json.loads(str(data['out']))
    np.testing.assert_allclose(dist_gen, single_gen, rtol=1e-5, atol=1e-6)  # the same items in the same order
    assert dist['fid'] == pytest.approx(single['fid'], rel=1e-6)
    assert dist['fid_sub'] == pytest.approx(single['fid_sub'], rel=1e-6)
    assert dist['fid_one'] == pytest.approx(single['fid_one'], rel=1e-6)
    assert dist['kid'] == pytest.approx(single['kid'], rel=1e-4, abs=1e-7)
    assert dist['pr'] == pytest.approx(list(single['pr']), abs=1e-9)
    assert dist['is_'] == pytest.approx(list(single['is_']), rel=1e-5)
    assert dist['ppl'] == pytest.approx(single['ppl'], rel=1e-3)
    assert single['fid'] > 0 and 0 < single['is_'][0]

#----------------------------------------------------------------------------
# Registry.

def test_metric_names():
    for name in metric_main.list_valid_metrics():
        assert metric_main.is_valid_metric(name), name
    for name in ['fid', 'fid0k', 'fid50', 'pr50k', 'pr50k3full', 'is50k_full', 'kid50k_fulll', 'ppl', 'eqt50k', 7]:
        assert not metric_main.is_valid_metric(name), name
    with pytest.raises(ValueError, match="Unknown metric 'fid50'.*fid50k_full"):
        metric_main.calc_metric('fid50')


@pytest.mark.parametrize('name, module, fn, expected', [
    ('fid50k_full', frechet_inception_distance, 'compute_fid', dict(max_real=None, num_gen=50000, xflip=False)),
    ('fid10k_full', frechet_inception_distance, 'compute_fid', dict(max_real=None, num_gen=10000, xflip=False)),
    ('fid50k', frechet_inception_distance, 'compute_fid', dict(max_real=50000, num_gen=50000, xflip=True)),
    ('kid50k_full', kernel_inception_distance, 'compute_kid', dict(max_real=1000000, num_gen=50000, num_subsets=100, max_subset_size=1000, xflip=False)),
    ('kid2k', kernel_inception_distance, 'compute_kid', dict(max_real=2000, num_gen=2000, xflip=True)),
    ('pr50k3_full', precision_recall, 'compute_pr', dict(max_real=200000, num_gen=50000, nhood_size=3, row_batch_size=10000, col_batch_size=10000, xflip=False)),
    ('pr10k5', precision_recall, 'compute_pr', dict(max_real=10000, num_gen=10000, nhood_size=5, xflip=True)),
    ('is50k', inception_score, 'compute_is', dict(num_gen=50000, num_splits=10, xflip=False)),
    ('ppl2_wend', perceptual_path_length, 'compute_ppl', dict(num_samples=50000, epsilon=1e-4, space='w', sampling='end', crop=False, batch_size=2)),
    ('ppl_zfull', perceptual_path_length, 'compute_ppl', dict(space='z', sampling='full', crop=True)),
    ('kid50k', kernel_inception_distance, 'compute_kid', dict(max_real=50000, num_gen=50000, num_subsets=100, max_subset_size=1000, xflip=True)),
    ('pr50k3', precision_recall, 'compute_pr', dict(max_real=50000, num_gen=50000, nhood_size=3, row_batch_size=10000, col_batch_size=10000, xflip=True)),
    ('ppl_wfull', perceptual_path_length, 'compute_ppl', dict(num_samples=50000, epsilon=1e-4, space='w', sampling='full', crop=True, batch_size=2)),
    ('ppl_zend', perceptual_path_length, 'compute_ppl', dict(num_samples=50000, epsilon=1e-4, space='z', sampling='end', crop=True, batch_size=2)),
    ('ppl_wend', perceptual_path_length, 'compute_ppl', dict(num_samples=50000, epsilon=1e-4, space='w', sampling='end', crop=True, batch_size=2)),
])
def test_metric_name_scheme_parameters(monkeypatch, name, module, fn, expected):
    seen = {}

    def fake(opts, **kwargs):
        seen.update(kwargs, xflip=opts.dataset_kwargs.get('xflip'), max_size=opts.dataset_kwargs.get('max_size', 'unset'))
        return (0.5, 0.25) if fn in ('compute_pr', 'compute_is') else 0.5
    monkeypatch.setattr(module, fn, fake)
    dataset_kwargs = dict(class_name=DATASET_CLASS, path='x', xflip=True, max_size=7)
    result = metric_main.calc_metric(name, G=mf.TinyGenerator(), dataset_kwargs=dataset_kwargs, device='cpu')
    assert dataset_kwargs['max_size'] == 7  # caller's dict untouched
    for k, v in expected.items():
        assert seen[k] == v, (k, seen[k], v)
    if not name.startswith('ppl'):
        assert seen['max_size'] is None
    keys = {'compute_pr': [f'{name}_precision', f'{name}_recall'], 'compute_is': [f'{name}_mean', f'{name}_std']}.get(fn, [name])
    assert sorted(result.results) == sorted(keys)
    assert result.metric == name and result.num_gpus == 1 and result.total_time >= 0 and isinstance(result.total_time_str, str)


def test_report_metric_and_snapshot_hook(env, capsys):
    run_dir = env['tmp'] / 'run'
    run_dir.mkdir()
    snap = str(run_dir / 'network-snapshot-000004.pt')
    torch.manual_seed(0)
    results = metric_main.run_metrics_on_snapshot(['fid1k_full'], mf.TinyGenerator(), env['dataset_kwargs'], str(run_dir), snap,
                                                  device='cpu', detector_dir=env['det'], verbose=True)
    assert 'generator features' in capsys.readouterr().out  # progress lines
    metric_main.report_metric(results[0], run_dir=str(run_dir), snapshot_pkl=snap, verbose=False)
    lines = (run_dir / 'metric-fid1k_full.jsonl').read_text().splitlines()
    assert len(lines) == 2
    entry = json.loads(lines[0])
    assert set(entry) == {'results', 'metric', 'total_time', 'total_time_str', 'num_gpus', 'snapshot_pkl', 'timestamp'}
    assert entry['snapshot_pkl'] == 'network-snapshot-000004.pt' and entry['metric'] == 'fid1k_full'
    assert entry['results']['fid1k_full'] == pytest.approx(results[0].results.fid1k_full) and entry['results']['fid1k_full'] > 0
    assert metric_main.evaluated_snapshots(str(run_dir), 'fid1k_full') == {'network-snapshot-000004.pt'}


def test_conditional_label_dimension_mismatch(env):
    with pytest.raises(ValueError, match=r'labels have dimension 3 but G.c_dim is 2'):
        metric_main.calc_metric('fid1k_full', G=mf.TinyGenerator(c_dim=2), dataset_kwargs=dict(env['dataset_kwargs'], use_labels=True),
                                device='cpu', detector_dir=env['det'])


def test_generated_items_do_not_depend_on_batching():
    z = metric_utils.item_latents([5, 6, 7], 4, seed=3)
    torch.testing.assert_close(z[1:], metric_utils.item_latents([6, 7], 4, seed=3))
    assert not torch.equal(z, metric_utils.item_latents([5, 6, 7], 4, seed=4))

#----------------------------------------------------------------------------


@pytest.mark.parametrize('fn, detector_kwargs, capture', [
    (lambda opts: frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=20), dict(return_features=True), 'capture_mean_cov'),
    (lambda opts: kernel_inception_distance.compute_kid(opts, max_real=None, num_gen=20, num_subsets=2, max_subset_size=5), dict(return_features=True), 'capture_all'),
    (lambda opts: precision_recall.compute_pr(opts, max_real=None, num_gen=20, nhood_size=3, row_batch_size=8, col_batch_size=8), dict(return_features=True), 'capture_all'),
    (lambda opts: inception_score.compute_is(opts, num_gen=20, num_splits=10), dict(no_output_bias=True), 'capture_all'),
])
def test_detector_kwargs_are_nvlabs(monkeypatch, fn, detector_kwargs, capture):
    # NVlabs: FID/KID/PR take raw features (return_features=True); IS takes the softmax without the output bias.
    calls = []

    def fake_stats(opts, detector_name, detector_kwargs, max_items=None, **stats_kwargs):
        calls.append((dict(detector_kwargs), stats_kwargs))
        stats = metric_utils.FeatureStats(max_items=20, **stats_kwargs)
        stats.append(np.random.RandomState(len(calls)).rand(20, 6).astype(np.float32) + 0.01)
        return stats
    monkeypatch.setattr(metric_utils, 'compute_feature_stats_for_dataset', fake_stats)
    monkeypatch.setattr(metric_utils, 'compute_feature_stats_for_generator', fake_stats)
    fn(metric_utils.MetricOptions(G=mf.TinyGenerator(), device='cpu'))
    assert len(calls) >= 1
    for kwargs, stats_kwargs in calls:
        assert kwargs == detector_kwargs and stats_kwargs == {capture: True}


def test_required_detectors_per_metric():
    # What train.py resolves at start-up: Inception for FID/KID/IS, VGG16 for PR/PPL, nothing for the
    # equivariance metrics (no detector) and the demo metrics (their detector is built on first use).
    assert metric_main.required_detectors('fid50k_full') == [detectors.INCEPTION]
    assert metric_main.required_detectors('is10k') == [detectors.INCEPTION]
    assert metric_main.required_detectors('pr50k3_full') == [detectors.VGG16]
    assert metric_main.required_detectors('ppl2_wend') == [detectors.VGG16]
    for name in ('eqt50k_int', 'eqt1k_frac', 'eqr50k', 'fid_demo', 'pr_demo', 'cls_demo'):
        assert metric_main.required_detectors(name) == [], name
    assert metric_main.is_equivariance_metric('eqt7k_frac') and not metric_main.is_equivariance_metric('eqt7k')
