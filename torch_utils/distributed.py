"""Process-group setup for one process, `--gpus=N` local spawning, torchrun and SLURM.

How a process finds its place (`detect_env`), in order:
  1. torchrun / torch.distributed.run: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (env://).
  2. SLURM (srun with more than one task): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; the master is
     MASTER_ADDR if set, else the first host of SLURM_JOB_NODELIST (via `scontrol show hostnames`
     when available, else parsed here); the port is MASTER_PORT if set, else 10000 + job id % 20000.
  3. Otherwise a single process: rank 0 of 1, no process group.
`launch_local(fn, num_procs)` spawns N processes on this machine on a free localhost port.

Backend: NCCL when CUDA is available, gloo otherwise. Under NCCL each process uses GPU `local_rank`;
under gloo processes run on the CPU (also on a GPU machine, e.g. for CPU tests).
Collectives time out after GANFORGE_DIST_TIMEOUT seconds (default 1800), so a dead or hung peer
ends the run with an error that says so instead of hanging forever.
"""

import contextlib
import datetime
import os
import re
import shutil
import socket
import subprocess
import tempfile
import traceback

import torch
import torch.distributed as dist

import dnnlib

#----------------------------------------------------------------------------

TIMEOUT_ENV = 'GANFORGE_DIST_TIMEOUT'
DEFAULT_TIMEOUT_S = 1800.0

_state = dnnlib.EasyDict(rank=0, world_size=1, local_rank=0, backend=None, launcher='single', owns_group=False, initialized=False)


class DistributedError(RuntimeError):
    """Launch or collective failure, with the rank and what to check."""

#----------------------------------------------------------------------------
# Environment detection.

def parse_slurm_nodelist(nodelist):
    """Expand a SLURM hostlist: 'node[01-03,07],gpu-a1' -> ['node01', 'node02', 'node03', 'node07', 'gpu-a1'].

    Supports comma-separated entries, bracket ranges with zero padding, lists inside brackets, and
    several bracket groups in one entry ('r[1-2]n[1-2]' -> r1n1, r1n2, r2n1, r2n2).
    """
    if not isinstance(nodelist, str) or not nodelist.strip():
        raise ValueError(f'Empty or invalid SLURM nodelist {nodelist!r}')
    entries, depth, cur = [], 0, ''
    for ch in nodelist.strip():
        if ch == '[':
            depth += 1
        elif ch == ']':
            depth -= 1
            if depth < 0:
                raise ValueError(f'Unbalanced "]" in SLURM nodelist {nodelist!r}')
        if ch == ',' and depth == 0:
            entries.append(cur)
            cur = ''
        else:
            cur += ch
    if depth != 0:
        raise ValueError(f'Unbalanced "[" in SLURM nodelist {nodelist!r}')
    entries.append(cur)

    hosts = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            raise ValueError(f'Empty host entry in SLURM nodelist {nodelist!r}')
        expansions = ['']
        for text, group in re.findall(r'([^\[\]]*)(?:\[([^\[\]]*)\])?', entry):
            choices = [text]
            if group:
                choices = []
                for part in group.split(','):
                    m = re.fullmatch(r'(\d+)-(\d+)', part.strip())
                    if m:
                        lo, hi = m.group(1), m.group(2)
                        if int(hi) < int(lo):
                            raise ValueError(f'Descending range [{part}] in SLURM nodelist {nodelist!r}')
                        choices += [text + str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
                    elif re.fullmatch(r'\d+', part.strip()):
                        choices.append(text + part.strip())
                    else:
                        raise ValueError(f'Invalid range {part!r} in SLURM nodelist {nodelist!r}')
            expansions = [e + c for e in expansions for c in choices]
        hosts += expansions
    return hosts


def slurm_master_addr(nodelist):
    """First host of a SLURM nodelist: `scontrol show hostnames` when available, else our parser."""
    hosts = []
    if shutil.which('scontrol'):
        try:
            hosts = subprocess.run(['scontrol', 'show', 'hostnames', nodelist], capture_output=True, text=True, timeout=30, check=True).stdout.split()
        except (OSError, subprocess.SubprocessError):
            hosts = []  # scontrol unusable here: parse it ourselves
    return hosts[0] if hosts else parse_slurm_nodelist(nodelist)[0]


def _env_int(environ, name, default=None):
    value = environ.get(name, default)
    if value is None:
        raise DistributedError(f'Environment variable {name} is required for a distributed launch but is not set')
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f'Environment variable {name}={value!r} is not an integer') from None


def detect_env(environ=None):
    """Where this process sits: EasyDict(launcher, rank, world_size, local_rank, master_addr, master_port).

    launcher is 'torchrun', 'slurm' or 'single'. Reads `environ` (default os.environ) only.
    """
    env = os.environ if environ is None else environ
    if 'RANK' in env and 'WORLD_SIZE' in env:
        world = _env_int(env, 'WORLD_SIZE')
        info = dnnlib.EasyDict(launcher='torchrun', rank=_env_int(env, 'RANK'), world_size=world,
            local_rank=_env_int(env, 'LOCAL_RANK', 0), master_addr=env.get('MASTER_ADDR'), master_port=env.get('MASTER_PORT'))
        if world > 1 and (not info.master_addr or not info.master_port):
            raise DistributedError('RANK and WORLD_SIZE are set but MASTER_ADDR or MASTER_PORT is not; launch with torchrun, '
                                   'or set both to the address and a free port of the rank-0 machine')
    elif 'SLURM_PROCID' in env and _env_int(env, 'SLURM_NTASKS', 1) > 1:
        nodelist = env.get('SLURM_JOB_NODELIST') or env.get('SLURM_NODELIST') or env.get('SLURM_STEP_NODELIST')
        addr = env.get('MASTER_ADDR')
        if not addr:
            if not nodelist:
                raise DistributedError('SLURM job without SLURM_JOB_NODELIST or SLURM_NODELIST: set MASTER_ADDR to the rank-0 host')
            addr = slurm_master_addr(nodelist)
        port = env.get('MASTER_PORT') or str(10000 + _env_int(env, 'SLURM_JOB_ID', 0) % 20000)
        info = dnnlib.EasyDict(launcher='slurm', rank=_env_int(env, 'SLURM_PROCID'), world_size=_env_int(env, 'SLURM_NTASKS'),
            local_rank=_env_int(env, 'SLURM_LOCALID', 0), master_addr=addr, master_port=port)
    else:
        info = dnnlib.EasyDict(launcher='single', rank=0, world_size=1, local_rank=0, master_addr=None, master_port=None)
    if info.world_size < 1 or not 0 <= info.rank < info.world_size or info.local_rank < 0:
        raise DistributedError(f'{info.launcher}: invalid rank {info.rank} / world size {info.world_size} / local rank {info.local_rank}')
    if info.master_port is not None:
        info.master_port = int(info.master_port)
    return info


def get_timeout():
    """Collective timeout as a timedelta: GANFORGE_DIST_TIMEOUT seconds, default 1800."""
    value = os.environ.get(TIMEOUT_ENV)
    if value is None or value == '':
        return datetime.timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(value)
    except ValueError:
        raise DistributedError(f'{TIMEOUT_ENV}={value!r} is not a number of seconds') from None
    if seconds <= 0:
        raise DistributedError(f'{TIMEOUT_ENV}={value!r} must be positive')
    return datetime.timedelta(seconds=seconds)

#----------------------------------------------------------------------------
# Initialization.

def default_backend():
    return 'nccl' if torch.cuda.is_available() else 'gloo'


def init(backend=None, env=None):
    """Join the process group described by the environment (see detect_env); a no-op for one process.

    Sets the CUDA device to the local rank when CUDA is available. Idempotent.
    Args:
        backend: 'nccl', 'gloo' or None (NCCL with CUDA, gloo without).
        env:     a detect_env()-style EasyDict to use instead of the environment (used by launch_local).
    Returns:
        The EasyDict from detect_env (launcher, rank, world_size, local_rank, master_addr, master_port).
    """
    info = detect_env() if env is None else dnnlib.EasyDict(env)
    if _state.initialized:
        if (info.rank, info.world_size) != (_state.rank, _state.world_size):
            raise DistributedError(f'distributed.init() called again with rank {info.rank}/{info.world_size}, '
                                   f'already initialized as {_state.rank}/{_state.world_size}')
        return info
    backend = backend or default_backend()
    if backend not in ('nccl', 'gloo'):
        raise DistributedError(f'Unknown backend {backend!r}; expected "nccl" or "gloo"')
    if backend == 'nccl' and not torch.cuda.is_available():
        raise DistributedError('Backend "nccl" needs CUDA, which is not available; use backend "gloo" on CPU')

    # Pick this process's GPU before NCCL touches any device (gloo means CPU processes).
    if backend == 'nccl':
        if info.local_rank >= torch.cuda.device_count():
            raise DistributedError(f'Local rank {info.local_rank} has no GPU: only {torch.cuda.device_count()} visible '
                                   f'(CUDA_VISIBLE_DEVICES={os.environ.get("CUDA_VISIBLE_DEVICES")!r}); start at most one process per GPU')
        torch.cuda.set_device(info.local_rank)

    owns_group = False
    if info.world_size > 1 and not dist.is_initialized():
        for k, v in dict(MASTER_ADDR=info.master_addr, MASTER_PORT=info.master_port, RANK=info.rank,
                         WORLD_SIZE=info.world_size, LOCAL_RANK=info.local_rank).items():
            os.environ[k] = str(v)
        try:
            dist.init_process_group(backend=backend, init_method='env://', rank=info.rank, world_size=info.world_size, timeout=get_timeout())
        except Exception as e:  # rendezvous failures come as several exception types
            raise DistributedError(f'Rank {info.rank}/{info.world_size} ({info.launcher}) could not join the process group at '
                                   f'{info.master_addr}:{info.master_port} with {backend}: {e}. Check that every rank uses the same '
                                   f'MASTER_ADDR/MASTER_PORT, the port is free and reachable, and all ranks were started.') from e
        owns_group = True
    _state.update(rank=info.rank, world_size=info.world_size, local_rank=info.local_rank, backend=backend,
                  launcher=info.launcher, owns_group=owns_group, initialized=True)
    return info


init_distributed = init


def shutdown():
    """Leave the process group created by init() (if any) and reset to single-process state."""
    if _state.owns_group and dist.is_initialized():
        dist.destroy_process_group()
    _state.update(rank=0, world_size=1, local_rank=0, backend=None, launcher='single', owns_group=False, initialized=False)

#----------------------------------------------------------------------------
# Queries and collectives.

def _group_active():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if _group_active() else _state.rank


def get_world_size():
    return dist.get_world_size() if _group_active() else _state.world_size


def get_local_rank():
    return _state.local_rank


def is_main():
    """True on global rank 0 (the rank that writes files)."""
    return get_rank() == 0


def device():
    """This process's device: cuda:<local_rank> with the NCCL backend, cpu with gloo (before init(): cuda:0 if available)."""
    backend = _state.backend if _state.initialized else default_backend()
    return torch.device('cuda', get_local_rank()) if backend == 'nccl' else torch.device('cpu')


def barrier():
    """Wait for all ranks (no-op for one process)."""
    if _group_active() and get_world_size() > 1:
        if dist.get_backend() == 'nccl':
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def print0(*args, **kwargs):
    """print() on rank 0 only, flushed."""
    if is_main():
        print(*args, **kwargs, flush=True)


def any_rank(flag, device):
    """True if `flag` is set on any rank (an all_reduce on `device`: call on every rank; plain `flag` for one process)."""
    if not _group_active() or get_world_size() == 1:
        return bool(flag)
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_flag(flag, device):
    """Rank 0's boolean `flag`, on every rank (a broadcast on `device`: call on every rank)."""
    if not _group_active() or get_world_size() == 1:
        return bool(flag)
    t = torch.tensor([int(bool(flag))], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def broadcast_object(obj, src=0):
    """Return rank `src`'s `obj` on every rank (any picklable object; e.g. the run dir)."""
    if not _group_active() or get_world_size() == 1:
        return obj
    objs = [obj if get_rank() == src else None]
    dist.broadcast_object_list(objs, src=src)
    return objs[0]

#----------------------------------------------------------------------------
# Failure reporting.

_PEER_FAILURE_RE = re.compile(r'gloo|nccl|connection (closed|reset|refused)|timed out|timeout|broken pipe|socket', re.IGNORECASE)


def is_peer_failure(e):
    """True if exception `e` looks like a collective failing because a peer died, hung or is unreachable."""
    if isinstance(e, getattr(dist, 'DistError', ())):
        return True
    return isinstance(e, RuntimeError) and not isinstance(e, DistributedError) and _PEER_FAILURE_RE.search(str(e)) is not None


@contextlib.contextmanager
def peer_failure_guard():
    """Turn collective failures inside the block into a DistributedError that names the rank and the timeout."""
    try:
        yield
    except Exception as e:
        if get_world_size() > 1 and is_peer_failure(e):
            raise DistributedError(f'Rank {get_rank()}/{get_world_size()}: a collective operation failed, most likely because another '
                                   f'rank died, hung or became unreachable (collective timeout {get_timeout().total_seconds():g}s, '
                                   f'set {TIMEOUT_ENV} to change it). Check the other ranks\' logs for the first error. '
                                   f'Original error: {type(e).__name__}: {e}') from e
        raise

#----------------------------------------------------------------------------
# Local multi-process launch.

def find_free_port():
    """A TCP port that was free on localhost a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _local_worker(index, num_procs, port, backend, fn, args, error_dir=None):
    env = dnnlib.EasyDict(launcher='local', rank=index, world_size=num_procs, local_rank=index, master_addr='127.0.0.1', master_port=port)
    init(backend=backend, env=env)
    try:
        with peer_failure_guard():
            fn(*args)
    except BaseException as e:
        # Leave a note for launch_local so it can report the root cause, not the peers that failed because of it.
        if error_dir is not None:
            kind = 'secondary' if isinstance(e, DistributedError) and is_peer_failure(e.__cause__) else 'primary'
            with open(os.path.join(error_dir, f'{index}.{kind}'), 'w') as f:
                f.write(''.join(traceback.format_exception(type(e), e, e.__traceback__)))
        raise
    finally:
        shutdown()


def _describe_local_failure(error_dir, num_procs, spawn_error):
    """Message for a failed launch_local: the first rank that failed on its own, then the consequences."""
    notes = {}
    for name in os.listdir(error_dir):
        rank, kind = name.split('.')
        with open(os.path.join(error_dir, name)) as f:
            notes[int(rank)] = (kind, f.read())
    order = sorted(notes, key=lambda r: (notes[r][0] != 'primary', r))
    exited = isinstance(spawn_error, torch.multiprocessing.ProcessExitedException) and spawn_error.error_index not in notes
    if exited and not any(kind == 'primary' for kind, _ in notes.values()):
        e = spawn_error  # died without raising (os._exit, a signal, out of memory): that is the root cause
        msg = (f'launch_local: process {e.error_index} of {num_procs} exited with code {e.exit_code}'
               + (f' (signal {e.signal_name})' if e.signal_name else '') + ' without raising; see its output above')
        if order:
            msg += f'\n(processes {", ".join(map(str, order))} failed as a consequence; process {order[0]}:\n{notes[order[0]][1]})'
        return msg
    if not order:
        return f'launch_local: {spawn_error}'
    first = order[0]
    msg = f'launch_local: process {first} of {num_procs} raised an exception:\n{notes[first][1]}'
    if order[1:]:
        msg += f'\n(processes {", ".join(map(str, order[1:]))} also failed; their collectives lost a peer)'
    return msg


def launch_local(fn, num_procs, args=(), backend=None):
    """Run `fn(*args)` in `num_procs` processes on this machine, each already in the process group.

    One process runs in the calling process; more are started with torch.multiprocessing.spawn
    (so `fn` and `args` must be picklable) and rendezvous on a free localhost port. Inside `fn`,
    get_rank() / get_world_size() / device() tell each process its place.
    Raises DistributedError naming the process that failed first (with its traceback) if any
    process raises or dies.
    """
    if num_procs < 1:
        raise DistributedError(f'launch_local: num_procs must be >= 1, got {num_procs}')
    backend = backend or default_backend()
    if backend == 'nccl' and num_procs > torch.cuda.device_count():
        raise DistributedError(f'launch_local: {num_procs} processes requested but only {torch.cuda.device_count()} GPUs are visible')
    if num_procs == 1:
        _local_worker(0, 1, None, backend, fn, args)
        return
    port = find_free_port()
    with tempfile.TemporaryDirectory(prefix='ganforge-launch-') as error_dir:
        try:
            torch.multiprocessing.spawn(_local_worker, args=(num_procs, port, backend, fn, tuple(args), error_dir), nprocs=num_procs, join=True)
        except (torch.multiprocessing.ProcessRaisedException, torch.multiprocessing.ProcessExitedException) as e:
            raise DistributedError(_describe_local_failure(error_dir, num_procs, e)) from None

#----------------------------------------------------------------------------
