"""torch_utils.distributed: SLURM nodelists, launcher detection, local spawning, failing peers."""

import os
import time

import pytest
import torch
import torch.distributed as dist

from torch_utils import distributed

#----------------------------------------------------------------------------
# SLURM nodelists.

@pytest.mark.parametrize('nodelist,expect', [
    ('node01', ['node01']),
    ('node[01-04]', ['node01', 'node02', 'node03', 'node04']),
    ('node1,node2', ['node1', 'node2']),
    ('node[1,3,8-10]', ['node1', 'node3', 'node8', 'node9', 'node10']),
    ('gpu-a[098-101],cpu7', ['gpu-a098', 'gpu-a099', 'gpu-a100', 'gpu-a101', 'cpu7']),
    ('r[1-2]n[1-2]-ib', ['r1n1-ib', 'r1n2-ib', 'r2n1-ib', 'r2n2-ib']),
    ('a[1-2],b[3]', ['a1', 'a2', 'b3']),
])
def test_parse_slurm_nodelist(nodelist, expect):
    assert distributed.parse_slurm_nodelist(nodelist) == expect


@pytest.mark.parametrize('nodelist,match', [
    ('node[01-04', 'Unbalanced'),
    ('node01]', 'Unbalanced'),
    ('node[5-2]', 'Descending'),
    ('node[a-b]', 'Invalid range'),
    ('', 'Empty'),
    ('a,,b', 'Empty host'),
])
def test_parse_slurm_nodelist_errors(nodelist, match):
    with pytest.raises(ValueError, match=match):
        distributed.parse_slurm_nodelist(nodelist)

#----------------------------------------------------------------------------
# Launcher detection.

def test_detect_single():
    info = distributed.detect_env({'HOME': '/root'})
    assert (info.launcher, info.rank, info.world_size, info.local_rank) == ('single', 0, 1, 0)


def test_detect_torchrun():
    env = dict(RANK='5', WORLD_SIZE='8', LOCAL_RANK='1', MASTER_ADDR='10.0.0.1', MASTER_PORT='29501',
               SLURM_PROCID='3', SLURM_NTASKS='8')  # torchrun inside a SLURM job: torchrun wins
    info = distributed.detect_env(env)
    assert (info.launcher, info.rank, info.world_size, info.local_rank) == ('torchrun', 5, 8, 1)
    assert (info.master_addr, info.master_port) == ('10.0.0.1', 29501)


def test_detect_torchrun_missing_master():
    with pytest.raises(distributed.DistributedError, match='MASTER_ADDR'):
        distributed.detect_env(dict(RANK='0', WORLD_SIZE='2'))
    with pytest.raises(distributed.DistributedError, match='WORLD_SIZE'):
        distributed.detect_env(dict(RANK='0', WORLD_SIZE='two'))
    with pytest.raises(distributed.DistributedError, match='invalid rank'):
        distributed.detect_env(dict(RANK='4', WORLD_SIZE='2', MASTER_ADDR='h', MASTER_PORT='1'))


def test_detect_slurm(monkeypatch):
    monkeypatch.setattr(distributed.shutil, 'which', lambda name: None)  # no scontrol: use the parser
    env = dict(SLURM_PROCID='6', SLURM_NTASKS='8', SLURM_LOCALID='2', SLURM_JOB_NODELIST='gpu[07-08]', SLURM_JOB_ID='123456')
    info = distributed.detect_env(env)
    assert (info.launcher, info.rank, info.world_size, info.local_rank) == ('slurm', 6, 8, 2)
    assert info.master_addr == 'gpu07'
    assert info.master_port == 10000 + 123456 % 20000
    info = distributed.detect_env(dict(env, MASTER_ADDR='head', MASTER_PORT='4000'))
    assert (info.master_addr, info.master_port) == ('head', 4000)
    info = distributed.detect_env(dict(SLURM_PROCID='0', SLURM_NTASKS='1', SLURM_JOB_NODELIST='n1'))
    assert (info.launcher, info.world_size) == ('single', 1)  # one task: no process group
    with pytest.raises(distributed.DistributedError, match='MASTER_ADDR'):
        distributed.detect_env(dict(SLURM_PROCID='0', SLURM_NTASKS='2'))


def test_slurm_master_addr_prefers_scontrol(monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return distributed.subprocess.CompletedProcess(cmd, 0, stdout='hostA\nhostB\n', stderr='')
    monkeypatch.setattr(distributed.shutil, 'which', lambda name: '/usr/bin/scontrol')
    monkeypatch.setattr(distributed.subprocess, 'run', fake_run)
    assert distributed.slurm_master_addr('weird[1-2]') == 'hostA'
    assert calls == [['scontrol', 'show', 'hostnames', 'weird[1-2]']]

    def failing_run(cmd, **kwargs):
        raise distributed.subprocess.CalledProcessError(1, cmd)
    monkeypatch.setattr(distributed.subprocess, 'run', failing_run)
    assert distributed.slurm_master_addr('node[03-04]') == 'node03'  # falls back to the parser


def test_init_bad_backend():
    env = dict(launcher='single', rank=0, world_size=1, local_rank=0, master_addr=None, master_port=None)
    with pytest.raises(distributed.DistributedError, match='Unknown backend'):
        distributed.init(backend='mpi', env=env)
    if not torch.cuda.is_available():
        with pytest.raises(distributed.DistributedError, match='"nccl" needs CUDA'):
            distributed.init(backend='nccl', env=env)


def test_timeout_env(monkeypatch):
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    assert distributed.get_timeout().total_seconds() == distributed.DEFAULT_TIMEOUT_S
    monkeypatch.setenv(distributed.TIMEOUT_ENV, '12.5')
    assert distributed.get_timeout().total_seconds() == 12.5
    monkeypatch.setenv(distributed.TIMEOUT_ENV, 'soon')
    with pytest.raises(distributed.DistributedError, match=distributed.TIMEOUT_ENV):
        distributed.get_timeout()


def test_single_process_helpers(capsys):
    distributed.init(backend='gloo', env=dict(launcher='single', rank=0, world_size=1, local_rank=0, master_addr=None, master_port=None))
    try:
        assert distributed.get_rank() == 0 and distributed.get_world_size() == 1 and distributed.is_main()
        assert not dist.is_initialized()
        distributed.barrier()
        assert distributed.broadcast_object({'run_dir': 'x'}) == {'run_dir': 'x'}
        distributed.print0('hello')
        assert capsys.readouterr().out == 'hello\n'
    finally:
        distributed.shutdown()

#----------------------------------------------------------------------------
# Local multi-process launch (module-level functions: they are pickled into the children).

def _allreduce_worker(out_dir):
    rank, world = distributed.get_rank(), distributed.get_world_size()
    x = torch.tensor([float(rank + 1)])
    dist.all_reduce(x)
    run_dir = distributed.broadcast_object(f'run-{os.getpid()}' if distributed.is_main() else None)
    distributed.barrier()
    assert distributed.device().type == 'cpu'  # gloo processes run on the CPU, also on GPU machines
    with open(os.path.join(out_dir, f'rank{rank}.txt'), 'w') as f:
        f.write(f'{world} {distributed.get_local_rank()} {x.item()} {run_dir}')


def _dead_peer_worker():
    if distributed.get_rank() == 1:
        os._exit(0)  # vanishes without a word (and without an error code)
    x = torch.ones(1)
    dist.all_reduce(x)


def _hung_peer_worker():
    if distributed.get_rank() == 1:
        time.sleep(120)  # alive but never joins the collective
    x = torch.ones(1)
    dist.all_reduce(x)


def _exiting_worker():
    if distributed.get_rank() == 1:
        os._exit(3)
    x = torch.ones(1)
    dist.all_reduce(x)


def _raising_worker():
    if distributed.get_rank() == 1:
        raise ValueError('boom from rank 1')
    distributed.barrier()


def test_launch_local_allreduce(tmp_path):
    distributed.launch_local(_allreduce_worker, 2, args=(str(tmp_path),), backend='gloo')
    results = [(tmp_path / f'rank{r}.txt').read_text().split() for r in range(2)]
    assert [r[:3] for r in results] == [['2', '0', '3.0'], ['2', '1', '3.0']]
    assert results[0][3] == results[1][3]  # all ranks agree on rank 0's object


def _nccl_worker(out_dir):
    x = torch.tensor([float(distributed.get_rank() + 1)], device=distributed.device())
    dist.all_reduce(x)
    with open(os.path.join(out_dir, f'rank{distributed.get_rank()}.txt'), 'w') as f:
        f.write(f'{x.device} {x.item()}')


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs 2 GPUs')
def test_launch_local_nccl(tmp_path):
    distributed.launch_local(_nccl_worker, 2, args=(str(tmp_path),), backend='nccl')
    assert [(tmp_path / f'rank{r}.txt').read_text() for r in range(2)] == ['cuda:0 3.0', 'cuda:1 3.0']


def test_launch_local_single_process(tmp_path):
    # One process runs in-process; all_reduce is not available, so use a worker without collectives.
    distributed.launch_local(_write_rank, 1, args=(str(tmp_path),))
    assert (tmp_path / 'rank0.txt').read_text() == '0 1'
    assert distributed.get_world_size() == 1 and not dist.is_initialized()


def _write_rank(out_dir):
    with open(os.path.join(out_dir, f'rank{distributed.get_rank()}.txt'), 'w') as f:
        f.write(f'{distributed.get_rank()} {distributed.get_world_size()}')


def test_launch_local_dead_peer(monkeypatch):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, '10')
    t0 = time.time()
    with pytest.raises(distributed.DistributedError, match=r'(?s)process 0 of 2.*another rank died, hung or became unreachable'):
        distributed.launch_local(_dead_peer_worker, 2, backend='gloo')
    assert time.time() - t0 < 60


def test_launch_local_hung_peer_times_out(monkeypatch):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, '4')
    t0 = time.time()
    with pytest.raises(distributed.DistributedError, match=r'(?s)process 0 of 2.*collective timeout 4s'):
        distributed.launch_local(_hung_peer_worker, 2, backend='gloo')
    assert time.time() - t0 < 60  # the peer sleeps 120 s: the timeout ended it, not the peer


def test_launch_local_exception_names_process():
    with pytest.raises(distributed.DistributedError, match=r'(?s)process 1 of 2 raised.*boom from rank 1'):
        distributed.launch_local(_raising_worker, 2, backend='gloo')


def test_launch_local_exit_code_names_process():
    with pytest.raises(distributed.DistributedError, match=r'process 1 of 2 exited with code 3'):
        distributed.launch_local(_exiting_worker, 2, backend='gloo')


def test_launch_local_bad_args():
    with pytest.raises(distributed.DistributedError, match='num_procs'):
        distributed.launch_local(_write_rank, 0)

#----------------------------------------------------------------------------
