"""calc_metrics.py: a run directory with snapshots gets one JSONL line per snapshot and metric, a rerun
skips what is done (resumable), a single snapshot file works, and bad input names the flag."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import calc_metrics
from tests import metrics_fixtures as mf
from tests.metrics_fixtures import single_thread  # noqa: F401 (autouse fixture)
from torch_utils.snapshot import save_snapshot

#----------------------------------------------------------------------------

@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv('GANFORGE_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('GANFORGE_DETECTOR_DIR', raising=False)
    ds = mf.make_tiny_dataset(str(tmp_path / 'tiny.npz'), num_images=32)
    det = str(tmp_path / 'det')
    mf.write_detectors(det)
    run_dir = tmp_path / '00000-tiny'
    run_dir.mkdir()
    for kimg in (0, 4):
        torch.manual_seed(kimg)
        save_snapshot(str(run_dir / f'network-snapshot-{kimg:06d}.pt'), G=None, D=None, G_ema=mf.TinyGenerator(),
                      training_set_kwargs=dict(class_name='tests.metrics_fixtures.TinyDataset', path=ds), cur_nimg=kimg * 1000)
    (run_dir / '.tmp-network-snapshot-000008.pt.abc').write_bytes(b'partial')  # a killed write: ignored
    return dict(run_dir=run_dir, det=det, ds=ds)


def _invoke(args):
    return CliRunner().invoke(calc_metrics.main, args, catch_exceptions=False)


def _lines(run_dir, metric):
    path = run_dir / f'metric-{metric}.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_run_dir_is_evaluated_once_per_snapshot(run):
    args = ['--network', str(run['run_dir']), '--metrics', 'fid1k_full,kid1k_full', '--detector-dir', run['det']]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    assert '[2/2]' in result.output and 'ETA' in result.output
    for metric in ('fid1k_full', 'kid1k_full'):
        lines = _lines(run['run_dir'], metric)
        assert [entry['snapshot_pkl'] for entry in lines] == ['network-snapshot-000000.pt', 'network-snapshot-000004.pt']
        assert all(entry['metric'] == metric and entry['num_gpus'] == 1 and metric in entry['results'] for entry in lines)
    fids = [entry['results']['fid1k_full'] for entry in _lines(run['run_dir'], 'fid1k_full')]
    assert fids[0] != fids[1] and min(fids) > 0

    # Rerun: nothing to do, no new lines.
    result = _invoke(args)
    assert result.exit_code == 0 and 'Nothing to do' in result.output
    assert len(_lines(run['run_dir'], 'fid1k_full')) == 2

    # A new snapshot and a new metric: only the missing pairs are computed.
    torch.manual_seed(8)
    save_snapshot(str(run['run_dir'] / 'network-snapshot-000008.pt'), G=None, D=None, G_ema=mf.TinyGenerator(),
                  training_set_kwargs=dict(class_name='tests.metrics_fixtures.TinyDataset', path=run['ds']))
    jobs = calc_metrics.calc_metrics(str(run['run_dir']), ['fid1k_full', 'is1k'], detector_dir=run['det'], verbose=False)
    assert [(os.path.basename(p), m) for p, m in jobs] == [('network-snapshot-000000.pt', ['is1k']), ('network-snapshot-000004.pt', ['is1k']),
                                                           ('network-snapshot-000008.pt', ['fid1k_full', 'is1k'])]
    assert len(_lines(run['run_dir'], 'fid1k_full')) == 3 and len(_lines(run['run_dir'], 'is1k')) == 3


def test_single_snapshot_file(run, monkeypatch):
    snap = str(run['run_dir'] / 'network-snapshot-000004.pt')
    monkeypatch.setenv('GANFORGE_DETECTOR_DIR', run['det'])  # the environment variable instead of the flag
    result = _invoke(['--network', snap, '--metrics', 'pr1k3_full', '--quiet'])
    assert result.exit_code == 0, result.output
    (entry,) = _lines(run['run_dir'], 'pr1k3_full')
    assert entry['snapshot_pkl'] == 'network-snapshot-000004.pt'
    assert 0 <= entry['results']['pr1k3_full_precision'] <= 1 and 0 <= entry['results']['pr1k3_full_recall'] <= 1


@pytest.mark.parametrize('args, flag, text', [
    (['--metrics', 'fid50'], '--metrics', "unknown metric 'fid50'"),
    (['--gpus', '0'], '--gpus', '0 is not in the range x>=1'),
    (['--data', '/nonexistent/data.zip'], '--data', 'no such dataset'),
    (['--detector-dir', '/nonexistent/dir'], '--detector-dir', 'not a directory'),
])
def test_bad_flags_are_named(run, args, flag, text):
    result = CliRunner().invoke(calc_metrics.main, ['--network', str(run['run_dir'])] + args)
    assert result.exit_code == 2
    assert flag in result.output and text in result.output


def test_bad_network_and_missing_detector(run, tmp_path):
    result = CliRunner().invoke(calc_metrics.main, ['--network', str(tmp_path / 'nothing.pt')])
    assert result.exit_code == 2 and '--network' in result.output and 'no such file or directory' in result.output
    empty = tmp_path / 'empty_run'
    empty.mkdir()
    result = CliRunner().invoke(calc_metrics.main, ['--network', str(empty)])
    assert result.exit_code == 2 and 'no network-snapshot-*.pt' in result.output
    no_det = tmp_path / 'no_detectors'
    no_det.mkdir()
    result = CliRunner().invoke(calc_metrics.main, ['--network', str(run['run_dir']), '--metrics', 'fid1k_full', '--detector-dir', str(no_det), '--quiet'])
    assert result.exit_code == 1
    assert 'inception-2015-12-05.pt' in result.output and str(no_det) in result.output
    assert not (run['run_dir'] / 'metric-fid1k_full.jsonl').exists()

#----------------------------------------------------------------------------

@pytest.mark.slow
def test_two_processes_on_cpu_match_one(run, tmp_path):
    # --gpus=2 without CUDA: two gloo processes; the real StyleGAN2 generator class so that the spawned
    # processes can rebuild it from the snapshot.
    from metrics import metric_main
    from training.network_loader import load_network
    from training.networks_stylegan2 import Generator
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, channel_base=64, channel_max=16, mapping_kwargs=dict(num_layers=2))
    run_dir = tmp_path / 'real'
    run_dir.mkdir()
    snap = str(run_dir / 'network-snapshot-000000.pt')
    save_snapshot(snap, G=None, D=None, G_ema=G, training_set_kwargs=dict(class_name='tests.metrics_fixtures.TinyDataset', path=run['ds']))
    result = _invoke(['--network', str(run_dir), '--metrics', 'fid1k_full', '--gpus', '2', '--detector-dir', run['det'], '--quiet'])
    assert result.exit_code == 0, result.output
    (entry,) = _lines(run_dir, 'fid1k_full')
    assert entry['num_gpus'] == 2
    single = metric_main.calc_metric('fid1k_full', G=load_network(snap)['G_ema'], dataset_kwargs=dict(class_name='tests.metrics_fixtures.TinyDataset', path=run['ds']),
                                     device='cpu', detector_dir=run['det'])
    assert entry['results']['fid1k_full'] == pytest.approx(single.results.fid1k_full, rel=1e-7)


def test_unreadable_dataset_names_data_flag(run, tmp_path):
    bad = tmp_path / 'bad.npz'
    bad.write_bytes(b'not an npz')
    result = CliRunner().invoke(calc_metrics.main, ['--network', str(run['run_dir']), '--metrics', 'fid1k_full', '--detector-dir', run['det'],
                                                    '--data', str(bad), '--quiet'])
    assert result.exit_code == 2 and '--data' in result.output and 'cannot open the dataset' in result.output

#----------------------------------------------------------------------------
# Job resilience: damaged snapshots are recorded and skipped, the job goes on, a summary closes it.

def test_corrupt_snapshot_among_good_ones_is_recorded_skipped_and_retried_when_changed(run):
    run_dir = run['run_dir']
    bad = run_dir / 'network-snapshot-000002.pt'  # sorts between the two good ones
    bad.write_bytes((run_dir / 'network-snapshot-000004.pt').read_bytes()[:4000])
    args = ['--network', str(run_dir), '--metrics', 'fid1k_full,kid1k_full', '--detector-dir', run['det']]
    result = CliRunner().invoke(calc_metrics.main, args)
    assert result.exit_code == 1, result.output
    out = result.output
    assert f'Skipping {bad}: cannot load it (' in out and 'corrupt or truncated' in out
    assert '[3/3]' in out  # the snapshot after the damaged one was evaluated
    assert 'FID: matrix square root of the ' in out and 'FID: matrix square root done in ' in out  # no silent stretch
    assert out.strip().splitlines()[-1].startswith('Error: 1 of 3 snapshot(s) could not be loaded and were skipped')
    for metric in ('fid1k_full', 'kid1k_full'):
        lines = _lines(run_dir, metric)
        assert [e['snapshot_pkl'] for e in lines] == ['network-snapshot-000000.pt', 'network-snapshot-000002.pt', 'network-snapshot-000004.pt']
        failed = lines[1]
        assert 'results' not in failed and 'corrupt or truncated' in failed['failed']
        assert failed['file_signature'] == [bad.stat().st_size, bad.stat().st_mtime_ns]
        assert all(metric in e['results'] for e in (lines[0], lines[2]))

    # The summary table: one row per snapshot, one column per metric, values as in the JSONL.
    table = out[out.index('Summary:'):].splitlines()[1:6]
    assert table[0].split() == ['snapshot', 'fid1k_full', 'kid1k_full']
    fid0 = _lines(run_dir, 'fid1k_full')[0]['results']['fid1k_full']
    kid0 = _lines(run_dir, 'kid1k_full')[0]['results']['kid1k_full']
    assert table[2].split() == ['network-snapshot-000000.pt', f'{fid0:.4g}', f'{kid0:.4g}']
    assert table[3].split() == ['network-snapshot-000002.pt', 'failed', 'to', 'load', 'failed', 'to', 'load']

    # Rerun with the file unchanged: not retried, nothing recomputed.
    result = CliRunner().invoke(calc_metrics.main, args)
    assert result.exit_code == 0 and f'Skipping {bad} for fid1k_full: it failed before and is unchanged' in result.output
    assert 'Nothing to do' in result.output and len(_lines(run_dir, 'fid1k_full')) == 3

    # The file is replaced (a finished copy of the good snapshot): retried, and its result recorded.
    bad.write_bytes((run_dir / 'network-snapshot-000004.pt').read_bytes())
    result = CliRunner().invoke(calc_metrics.main, args + ['--quiet'])
    assert result.exit_code == 0, result.output
    lines = _lines(run_dir, 'fid1k_full')
    assert len(lines) == 4 and lines[3]['snapshot_pkl'] == 'network-snapshot-000002.pt'
    assert lines[3]['results']['fid1k_full'] == pytest.approx(lines[2]['results']['fid1k_full'], rel=1e-9)  # same weights, same FID
    assert 'Nothing to do' in CliRunner().invoke(calc_metrics.main, args).output


def test_data_accepts_the_demo_names_of_train_py(run, tmp_path, monkeypatch):
    from training import demo_dataset
    calls = []

    demo_zip = str(tmp_path / 'demo-8px.zip')  # the real demo renders 2000 images; here only the name mapping matters
    demo_dataset.write_dataset_zip(demo_zip, np.random.RandomState(0).randint(0, 256, size=[16, 8, 8, 3]).astype(np.uint8))

    def fake_resolve(name):
        calls.append(name)
        return demo_zip
    monkeypatch.setattr(demo_dataset, 'resolve_data_path', fake_resolve)
    snap = str(run['run_dir'] / 'network-snapshot-000000.pt')
    jobs = calc_metrics.calc_metrics(snap, ['fid1k_full'], data='demo16', detector_dir=run['det'], verbose=False)
    assert calls == ['demo16'] and len(jobs) == 1
    result = CliRunner().invoke(calc_metrics.main, ['--network', snap, '--data', 'demo17'])
    assert result.exit_code == 2 and '--data: demo17: no such dataset' in result.output and 'demo, demo16, demo32, demo64' in result.output


def test_missing_detector_is_one_short_line_naming_file_folder_and_option(run, tmp_path):
    no_det = tmp_path / 'no_detectors'
    no_det.mkdir()
    result = CliRunner().invoke(calc_metrics.main, ['--network', str(run['run_dir']), '--metrics', 'fid1k_full', '--detector-dir', str(no_det), '--quiet'])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith('Error: detector file inception-2015-12-05.pt') and len(line) - len(str(no_det)) < 250
    assert f' not found in {no_det}; put it there (official copy: https://' in line
    assert line.endswith('or pass --detector-dir=DIR')
    options = {opt for param in calc_metrics.main.params for opt in param.opts}
    assert '--detector-dir' in options


def test_offline_without_detector_dir_is_one_line_naming_the_option(run, monkeypatch):
    from dnnlib import util

    real_open_url = util.open_url

    def offline(url, *args, **kwargs):  # local files open as usual; every download fails as without a network
        if '://' in str(url):
            raise IOError(f'{url}: <urlopen error [Errno -3] Temporary failure in name resolution>')
        return real_open_url(url, *args, **kwargs)
    monkeypatch.setattr(util, 'open_url', offline)
    result = CliRunner().invoke(calc_metrics.main, ['--network', str(run['run_dir']), '--metrics', 'fid1k_full', '--quiet'])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith('Error: detector file inception-2015-12-05.pt') and 'could not be downloaded from https://' in line
    assert line.endswith('without internet, put it into a folder DIR and pass --detector-dir=DIR') and len(line) < 300
