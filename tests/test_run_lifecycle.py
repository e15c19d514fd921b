"""Run lifecycle of train.py as a cluster sees it: every failure exits non-zero with one clear last
line (with the default DataLoader workers), one writer per run dir, a finished run stays finished,
--resume=auto picks by recorded options and falls back past a damaged checkpoint, and 2 ranks
stopped and resumed equal an uninterrupted 2-rank run bit for bit."""

import errno
import io
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

from torch_utils import distributed
from training import checkpoint, resume, run_dir as rundir, runtime, training_loop
from tests.test_resume import _compare
from tests.test_training_loop import tiny_config, tiny_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--device=cpu', '--cbase=256', '--cmax=32', '--map=2', '--batch=4', '--aug=noaug', '--tick=0.004', '--snap=1']


@pytest.fixture(scope='module')
def data_path(tmp_path_factory):
    return tiny_dataset(str(tmp_path_factory.mktemp('data')))


def train(args, env=None, timeout=180):
    """Run train.py in a fresh process (default --workers); returns (exit status, last output line, all output)."""
    full_env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1', **(env or {}))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py')] + args, cwd=ROOT, env=full_env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, lines[-1] if lines else '', proc.stdout


def _image_folder(path, num=8, broken=None):
    os.makedirs(path)
    for i in range(num):
        PIL.Image.fromarray(np.random.RandomState(i).randint(0, 255, [16, 16, 3], dtype=np.uint8)).save(os.path.join(path, f'img{i}.png'))
    if broken is not None:
        with open(os.path.join(path, f'img{broken}.png'), 'wb') as f:
            f.write(b'not an image')
    return str(path)

#----------------------------------------------------------------------------
# Every failure exits, naming its cause on the last line.

def _bad_resume_file(tmp_path, _data):
    path = tmp_path / 'bad.pt'
    path.write_bytes(b'PK\x03\x04 truncated')
    return [f'--resume={path}'], {}, ['--resume', 'bad.pt']


def _dev_null(_tmp, _data):
    return ['--resume=/dev/null'], {}, ['--resume', '/dev/null', 'not a regular file']


def _unreachable_url(_tmp, _data):
    port = distributed.find_free_port()  # free a moment ago: nobody listens there
    return [f'--resume=http://127.0.0.1:{port}/network.pkl'], {}, ['--resume', f'127.0.0.1:{port}']


def _wrong_architecture(tmp_path, _data):
    from tests import nvlabs_pickle_writer as W
    from training.networks_stylegan2 import Discriminator, Generator
    kw = dict(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=None)
    G, D = Generator(z_dim=32, w_dim=32, mapping_kwargs=dict(num_layers=2), **kw), Discriminator(**kw)
    path = tmp_path / 'other.pkl'
    path.write_bytes(W.network_pickle_bytes(G, D, G, W.hostile_module_src(tmp_path / 'MARKER')))
    return [f'--resume={path}'], {}, ['--resume', 'other.pkl', 'do not fit']


def _broken_image(tmp_path, _data):
    return [f'--data={_image_folder(tmp_path / "imgs", broken=5)}'], {}, ['img5.png', 'cannot decode']


def _bad_labels(tmp_path, _data):
    folder = _image_folder(tmp_path / 'imgs')
    with open(os.path.join(folder, 'dataset.json'), 'w') as f:
        json.dump({'labels': [[f'img{i}.png', 'cat' if i == 3 else 1] for i in range(8)]}, f)
    return [f'--data={folder}', '--cond=1'], {}, ['dataset.json', 'img3.png']


def _metric_without_detector(tmp_path, _data):
    (tmp_path / 'detectors').mkdir()
    return ['--metrics=fid50k_full'], {'GANFORGE_DETECTOR_DIR': str(tmp_path / 'detectors')}, ['--metrics', 'inception']


def _nan_kimg(_tmp, _data):
    return ['--kimg=nan'], {}, ['kimg', 'nan']


@pytest.mark.parametrize('case', [_bad_resume_file, _dev_null, _unreachable_url, _wrong_architecture, _broken_image, _bad_labels,
                                  _metric_without_detector, _nan_kimg])
def test_failure_exits_with_one_clear_line(tmp_path, data_path, case):
    args, env, words = case(tmp_path, data_path)
    if not any(a.startswith('--data=') for a in args):
        args = args + [f'--data={data_path}']
    status, last, output = train([f'--outdir={tmp_path / "out"}', '--kimg=0.1'] + TINY + args, env=env)
    assert status != 0, output[-3000:]
    assert all(word in last for word in words), f'last line: {last!r}'
    for log in (tmp_path / 'out').glob('*/log.txt'):  # a run that started logs its error line too
        assert log.read_text().splitlines()[-1] == last
    assert not (tmp_path / 'MARKER').exists()


class _FullDisk(io.RawIOBase):
    """A file that runs out of space after 1000 bytes."""
    written = 0

    def writable(self):
        return True

    def write(self, data):
        self.written += len(data)
        if self.written > 1000:
            raise OSError(errno.ENOSPC, 'No space left on device')
        return len(data)


def test_disk_full_is_named():
    # torch.save on a full disk raises 'unexpected pos ...' with the OSError only as its context.
    with pytest.raises(OSError) as info:
        with runtime.naming_disk_full('/runs/00000/training-state-000004.pt'):
            torch.save({'x': torch.zeros(10000)}, _FullDisk())
    assert runtime.describe_failure(info.value) == 'no space left on /runs/00000/training-state-000004.pt'
    assert runtime.describe_failure(OSError(errno.ENOSPC, 'No space left on device'), where='/runs/x') == 'no space left on /runs/x'
    with pytest.raises(ValueError):  # other errors pass unchanged
        with runtime.naming_disk_full('/runs/x'):
            raise ValueError('x')


#----------------------------------------------------------------------------
# One writer per run dir; finished is finished.

@pytest.fixture(scope='module')
def finished_run(tmp_path_factory, data_path):
    outdir = tmp_path_factory.mktemp('finished') / 'out'
    args = [f'--outdir={outdir}', f'--data={data_path}', '--resume=auto'] + TINY
    status, last, output = train(args + ['--kimg=0.004'])
    assert status == 0, output[-3000:]
    [run_name] = os.listdir(outdir)
    log = (outdir / run_name / 'log.txt').read_text()
    assert log.index('Training options:') < log.index('tick 0') < log.index('Exiting...')  # everything printed, from the options on
    return outdir, args


def _files(run_dir):
    return {name: (os.stat(run_dir / name).st_mtime_ns, (run_dir / name).read_bytes()) for name in sorted(os.listdir(run_dir))}


def test_finished_run_rerun_writes_nothing(finished_run):
    outdir, args = finished_run
    [run_name] = os.listdir(outdir)
    before = _files(outdir / run_name)
    status, last, output = train(args + ['--kimg=0.004'])
    assert status == 0 and 'is complete' in last, output[-3000:]
    assert os.listdir(outdir) == [run_name] and _files(outdir / run_name) == before


def test_lock_refuses_live_holder_and_takes_over_dead_one(finished_run, tmp_path):
    outdir = tmp_path / 'out'
    shutil.copytree(finished_run[0], outdir)
    args = [f'--outdir={outdir}'] + finished_run[1][1:] + ['--kimg=0.008']
    [run_name] = os.listdir(outdir)
    lock_path = outdir / run_name / rundir.LOCK_NAME
    host = socket.gethostname()

    # A live holder (this test process): refused, nothing written.
    lock_path.write_text(json.dumps({'host': host, 'pid': os.getpid(), 'time': 0}))
    before = _files(outdir / run_name)
    status, last, output = train(args)
    assert status != 0 and f'process {os.getpid()} on host {host}' in last, output[-3000:]
    assert _files(outdir / run_name) == before

    # A dead holder on this host: the lock is stale, the run continues and releases it at the end.
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    lock_path.write_text(json.dumps({'host': host, 'pid': dead.pid, 'time': 0}))
    status, last, output = train(args)
    assert status == 0 and 'stale lock' in output and 'exact continuation' in output, output[-3000:]
    assert os.path.exists(outdir / run_name / 'training-state-000000.008.pt') and not lock_path.exists()


def test_claimed_run_dirs_and_lock_in_process(tmp_path):
    run_dir = rundir.claim_new_run_dir(str(tmp_path), 'x')
    with rundir.RunDirLock(run_dir) as lock:
        assert rundir.read_lock(run_dir) == lock.info
        with pytest.raises(rundir.RunDirError, match=f'process {os.getpid()} on host'):
            rundir.RunDirLock(run_dir)
    assert rundir.read_lock(run_dir) is None
    assert not [n for n in os.listdir(run_dir) if n.startswith('.tmp-')]

#----------------------------------------------------------------------------
# The resume planner.

def _fake_checkpoint(path, cur_nimg):
    torch.save({'format': 'ganforge-snapshot', 'extra': {'training_state': {'cur_nimg': cur_nimg}}}, path)


def test_resume_auto_matches_recorded_options_and_falls_back(tmp_path):
    outdir = tmp_path / 'out'
    options = {'batch_size': 4, 'total_kimg': 1, 'loss_kwargs': {'r1_gamma': 1}}
    a = outdir / '00000-name-a'
    b = outdir / '00001-other-name'  # newer, other name, same options: the name plays no part
    for run, opts in [(a, options), (b, dict(options, training_set_kwargs={'use_labels': True}))]:
        run.mkdir(parents=True)
        checkpoint.write_json(run / 'training_options.json', opts)
        _fake_checkpoint(run / 'training-state-000000.004.pt', 4)
    plan = resume.plan_run(str(outdir), 'desc', options, resume='auto', ignore_keys=('total_kimg',))
    assert plan.run_dir == str(a) and plan.kind == resume.EXACT and plan.resume.endswith('000000.004.pt') and not plan.complete

    # A damaged newest checkpoint: the previous one is used.
    (a / 'training-state-000000.008.pt').write_bytes(b'PK\x03\x04 truncated')
    with pytest.warns(UserWarning, match=r'Skipping unusable checkpoint .*000000\.008\.pt'):
        plan = resume.plan_run(str(outdir), 'desc', dict(options, total_kimg=0.004), resume='auto', ignore_keys=('total_kimg',))
    assert plan.resume.endswith('000000.004.pt') and plan.complete  # 4 images of 0.004 kimg done

    # None usable: an error, never a restart at kimg 0 inside the old dir.
    (a / 'training-state-000000.004.pt').write_bytes(b'')
    with pytest.raises(resume.ResumeError, match='none is usable'), pytest.warns(UserWarning, match='Skipping unusable checkpoint'):
        resume.plan_run(str(outdir), 'desc', options, resume='auto', ignore_keys=('total_kimg',))

    # Nothing matches: a fresh run, with a note naming the option of the nearest candidate.
    plan = resume.plan_run(str(outdir), 'desc', dict(options, batch_size=8), resume='auto', ignore_keys=('total_kimg',))
    assert plan.run_dir is None and plan.resume is None and 'batch_size: run has 4, command gives 8' in plan.note

    # A truncated training_options.json is named.
    (b / 'training_options.json').write_text('{"batch_')
    with pytest.raises(resume.ResumeError, match='training_options.json'):
        resume.plan_run(str(outdir), 'desc', options, resume='auto')

#----------------------------------------------------------------------------
# Multi-rank exact resume.

def _rank_worker(c):
    training_loop.training_loop(**dict(c, rank=distributed.get_rank(), num_gpus=distributed.get_world_size()))


@pytest.mark.slow
def test_two_rank_resume_is_bit_exact(tmp_path, data_path):
    opts = dict(image_snapshot_ticks=None, network_snapshot_ticks=100, kimg_per_tick=0.008, batch_gpu=2)
    full_dir, split_dir = tmp_path / 'full', tmp_path / 'split'
    distributed.launch_local(_rank_worker, 2, args=(tiny_config(full_dir, data_path, total_kimg=0.02, **opts),), backend='gloo')
    distributed.launch_local(_rank_worker, 2, args=(tiny_config(split_dir, data_path, total_kimg=0.012, **opts),), backend='gloo')
    first = checkpoint.find_latest_checkpoint(str(split_dir))
    distributed.launch_local(_rank_worker, 2, args=(tiny_config(split_dir, data_path, total_kimg=0.02, resume=first, **opts),), backend='gloo')
    full = checkpoint.read_checkpoint(checkpoint.find_latest_checkpoint(str(full_dir)))
    resumed = checkpoint.read_checkpoint(checkpoint.find_latest_checkpoint(str(split_dir)))
    assert resumed['extra']['training_state']['batch_idx'] == full['extra']['training_state']['batch_idx'] == 5
    _compare(full, resumed)
    for rank in range(2):  # every rank's RNG state continued too
        for key in ['torch', 'numpy']:
            a, b = full['extra']['training_state']['rng_states'][rank][key], resumed['extra']['training_state']['rng_states'][rank][key]
            assert torch.equal(a, b) if key == 'torch' else torch.equal(a['key'], b['key'])
