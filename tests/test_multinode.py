"""Multi-node on one machine: two torchrun launchers (--nnodes=2, one --node_rank each) train one
tiny CPU run together and write one run dir; killing one node makes the other exit with an error
that says a peer failed, within a bounded time, instead of hanging."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from torch_utils import distributed
from tests.test_training_loop import tiny_dataset

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--cbase=256', '--cmax=32', '--map=2', '--batch=4', '--mbstd-group=2', '--workers=0', '--device=cpu', '--aug=noaug', '--tick=0.004']


@pytest.fixture(scope='module')
def data_path(tmp_path_factory):
    return tiny_dataset(str(tmp_path_factory.mktemp('data')))


def _start_nodes(tmp_path, args):
    port = distributed.find_free_port()
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1', GANFORGE_DIST_TIMEOUT='60')
    procs = []
    for node_rank in range(2):
        log = open(tmp_path / f'node{node_rank}.log', 'w')
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nnodes=2', f'--node_rank={node_rank}', '--nproc_per_node=1',
               '--master_addr=127.0.0.1', f'--master_port={port}', os.path.join(ROOT, 'train.py')] + args
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def _descendants(pid):
    """Child processes of `pid`, recursively (torchrun starts its workers in their own sessions)."""
    out = []
    try:
        for task in os.listdir(f'/proc/{pid}/task'):
            with open(f'/proc/{pid}/task/{task}/children') as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        return []
    return out + [d for c in out for d in _descendants(c)]


def _kill_node(proc):
    """SIGKILL a launcher and every process it started, as if the machine died."""
    for pid in [proc.pid] + _descendants(proc.pid):
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            _kill_node(p)


def test_two_nodes_train_one_run(tmp_path, data_path):
    outdir = tmp_path / 'out'
    procs = _start_nodes(tmp_path, [f'--outdir={outdir}', f'--data={data_path}', '--kimg=0.008', '--snap=1'] + TINY)
    try:
        codes = [p.wait(timeout=240) for p in procs]
    finally:
        _stop(procs)
    logs = [(tmp_path / f'node{i}.log').read_text() for i in range(2)]
    assert codes == [0, 0], f'exit codes {codes}\n--- node0 ---\n{logs[0][-3000:]}\n--- node1 ---\n{logs[1][-3000:]}'
    runs = os.listdir(outdir)
    assert len(runs) == 1 and '-gpus2-' in runs[0], runs
    run_dir = outdir / runs[0]
    assert json.load(open(run_dir / 'training_options.json'))['num_gpus'] == 2
    assert (run_dir / 'network-snapshot-000000.008.pt').exists() and (run_dir / 'training-state-000000.008.pt').exists()
    kimg = [json.loads(l)['Progress/kimg']['mean'] for l in open(run_dir / 'stats.jsonl')]
    assert abs(kimg[-1] - 0.008) < 1e-6
    assert 'torchrun, 2 ranks' in logs[0] and 'tick 0' in logs[0] and 'tick 0' not in logs[1]  # rank 0 alone reports


def test_killed_node_makes_the_other_fail_fast(tmp_path, data_path):
    outdir = tmp_path / 'out'
    procs = _start_nodes(tmp_path, [f'--outdir={outdir}', f'--data={data_path}', '--kimg=100', '--snap=1000'] + TINY)
    try:
        # Wait until the two nodes are training together (rank 0 has finished a tick).
        deadline = time.time() + 180
        while 'tick 1 ' not in (tmp_path / 'node0.log').read_text():
            assert time.time() < deadline and procs[0].poll() is None, (tmp_path / 'node0.log').read_text()[-3000:]
            time.sleep(0.5)
        _kill_node(procs[1])
        t0 = time.time()
        code = procs[0].wait(timeout=120)
        elapsed = time.time() - t0
    finally:
        _stop(procs)
    log = (tmp_path / 'node0.log').read_text()
    assert code != 0, log[-3000:]
    assert elapsed < 120
    assert 'another rank died' in log or 'Connection closed by peer' in log, log[-3000:]
