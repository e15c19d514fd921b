"""Training checkpoints and run directories: naming, finding the newest valid one, keeping the last
few, RNG state capture, the `--resume=auto` choice of run directory, and the loop's run-time
plumbing around them (SIGTERM/Ctrl-C -> checkpoint and exit, log.txt, memory figures).

A training checkpoint `training-state-NNNNNN.pt` (NNNNNN = kimg, rounded down) is a network snapshot
(see `torch_utils.snapshot`) whose `extra['training_state']` holds: optimizer states, loss
state (pl_mean), ADA p and controller state, counters (cur_nimg, cur_tick, batch_idx), the RNG
states of every rank and the sampler position. It contains plain data only and loads with
`torch.load(weights_only=True)`; the training state sits in the snapshot's `extra` dict. Files are written through `dnnlib.util.atomic_write`, so a file with
the final name is complete; leftovers `.tmp-*` of a killed writer are ignored (and removed by `prune`).
"""

import contextlib
import glob
import json
import os
import random
import re
import signal
import sys
import threading
import warnings

import numpy as np
import torch

import dnnlib

CHECKPOINT_FMT = 'training-state-{kimg:06d}.pt'
SNAPSHOT_FMT = 'network-snapshot-{kimg:06d}.pt'
_CHECKPOINT_RE = re.compile(r'training-state-(\d+)\.pt')
_RUN_DIR_RE = re.compile(r'(\d{5})-(.+)')

#----------------------------------------------------------------------------
# Finding and pruning checkpoints.

def list_checkpoints(run_dir):
    """Paths of the complete checkpoints in `run_dir`, oldest first (by kimg, then mtime)."""
    if not os.path.isdir(run_dir):
        return []
    found = []
    for name in os.listdir(run_dir):
        m = _CHECKPOINT_RE.fullmatch(name)  # '.tmp-training-state-...' never matches: partial writes are ignored
        if m:
            path = os.path.join(run_dir, name)
            found.append((int(m.group(1)), os.path.getmtime(path), path))
    return [path for _kimg, _mtime, path in sorted(found)]


def read_checkpoint(path):
    """Load a checkpoint or snapshot file as plain data (no code runs); errors name the file."""
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise IOError(f'Cannot read checkpoint {path}: {type(e).__name__}: {e}. '
                      f'The file is damaged; delete it to resume from the previous checkpoint.') from e


def find_latest_checkpoint(run_dir, verbose=True):
    """Path of the newest checkpoint in `run_dir` that loads and holds a training state, or None.

    Damaged files (e.g. truncated by a full disk) are skipped with a warning.
    """
    for path in reversed(list_checkpoints(run_dir)):
        try:
            data = read_checkpoint(path)
        except IOError as e:
            warnings.warn(str(e))
            continue
        if isinstance(data, dict) and 'training_state' in (data.get('extra') or {}):
            return path
        if verbose:
            warnings.warn(f'{path}: not a ganforge training state; skipped')
    return None


def prune_checkpoints(run_dir, keep):
    """Delete all but the newest `keep` checkpoints, and stale `.tmp-*` files of killed writers."""
    if keep is not None and keep > 0:
        for path in list_checkpoints(run_dir)[:-keep]:
            os.remove(path)
    for path in glob.glob(os.path.join(glob.escape(run_dir), '.tmp-training-state-*')):
        with contextlib.suppress(OSError):  # another process may have removed it
            os.remove(path)

#----------------------------------------------------------------------------
# RNG states as weights_only-loadable data.

def get_rng_state():
    """RNG states of this process: torch CPU, torch CUDA (all devices), numpy, python `random`."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return dict(
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        numpy=dict(kind=np_state[0], key=torch.from_numpy(np_state[1].astype(np.int64)), pos=int(np_state[2]),
                   has_gauss=int(np_state[3]), gauss=float(np_state[4])),
        python=dict(version=py_state[0], state=list(py_state[1]), gauss=py_state[2]),
    )


def set_rng_state(state):
    """Inverse of `get_rng_state`."""
    torch.set_rng_state(state['torch'])
    if torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state['cuda'])
    s = state['numpy']
    np.random.set_state((s['kind'], s['key'].numpy().astype(np.uint32), s['pos'], s['has_gauss'], s['gauss']))
    s = state['python']
    random.setstate((s['version'], tuple(s['state']), s['gauss']))


def step_seed(*keys):
    """A 32-bit seed that is a pure function of integer `keys`, e.g. (random_seed, rank, batch_idx)."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(1)[0])

#----------------------------------------------------------------------------
# Run directories.

def new_run_dir(outdir, desc):
    """`outdir/NNNNN-desc` with NNNNN one above the highest existing run id (NVlabs naming)."""
    ids = [int(m.group(1)) for m in (_RUN_DIR_RE.fullmatch(d) for d in _listdir(outdir)) if m]
    return os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')


def find_resumable_run_dir(outdir, desc, options=None, ignore_keys=('run_dir', 'resume')):
    """Newest `outdir/NNNNN-desc` that holds a checkpoint, for `--resume=auto`; None if there is none.

    With `options`, the run's `training_options.json` must agree on every key except `ignore_keys`
    and the training length (`total_kimg` may grow); otherwise ValueError names the differing keys,
    so that a changed command does not silently continue an unrelated run.
    """
    candidates = sorted((int(m.group(1)), d) for d in _listdir(outdir) for m in [_RUN_DIR_RE.fullmatch(d)]
                        if m and m.group(2) == desc)
    for _run_id, name in reversed(candidates):
        run_dir = os.path.join(outdir, name)
        if not list_checkpoints(run_dir):
            continue
        if options is not None:
            check_options_match(run_dir, options, ignore_keys=tuple(ignore_keys) + ('total_kimg',))
        return run_dir
    return None


def check_options_match(run_dir, options, ignore_keys):
    """Raise ValueError if `run_dir/training_options.json` differs from `options` (except `ignore_keys`)."""
    path = os.path.join(run_dir, 'training_options.json')
    if not os.path.isfile(path):
        return
    with open(path, 'r', encoding='utf-8') as f:
        old = json.load(f)
    new = json.loads(json.dumps(options))  # same normalization (tuples -> lists) as the stored file
    diff = sorted(k for k in set(old) | set(new) if k not in ignore_keys and old.get(k) != new.get(k))
    if diff:
        details = '; '.join(f'{k}: run has {old.get(k)!r}, command gives {new.get(k)!r}' for k in diff[:4])
        raise ValueError(f'--resume=auto: {run_dir} was started with different options ({details}). '
                         f'Re-run the original command, pass --resume=<checkpoint path> to fine-tune, '
                         f'or use another --outdir.')


def _listdir(path):
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))) if os.path.isdir(path) else []

#----------------------------------------------------------------------------

def write_json(path, obj):
    """Write `obj` as indented JSON atomically."""
    with dnnlib.util.atomic_write(path, 'w') as f:
        json.dump(obj, f, indent=2)
        f.write('\n')

#----------------------------------------------------------------------------
# Run-time plumbing of the training loop: preemption signals, log.txt, memory figures.

def ignore_signals(_worker_id):
    """DataLoader workers leave SIGTERM / Ctrl-C (sent to the whole process group) to the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class StopSignals:
    """SIGTERM (SLURM preemption) and the first Ctrl-C set `signum`: the loop checkpoints and exits; a second Ctrl-C aborts."""

    def __init__(self):
        self.signum = None
        self._old = {}
        if threading.current_thread() is threading.main_thread():  # signals can only be handled there
            for sig in [signal.SIGTERM, signal.SIGINT]:
                self._old[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum, _frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(f'Received signal {signum}: writing a checkpoint at the next check, then exiting (Ctrl-C again to abort now).', flush=True)

    def close(self):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class LogTee:
    """Copy stdout and stderr into `path` (append) while the loop runs; no-op when path is None."""

    def __init__(self, path):
        self.file = open(path, 'a', encoding='utf-8') if path is not None else None
        self.streams = (sys.stdout, sys.stderr)
        if self.file is not None:
            sys.stdout, sys.stderr = _TeeStream(sys.stdout, self.file), _TeeStream(sys.stderr, self.file)

    def close(self):
        if self.file is not None:
            sys.stdout, sys.stderr = self.streams
            self.file.close()
            self.file = None


class _TeeStream:
    def __init__(self, stream, file):
        self.stream, self.file = stream, file

    def write(self, text):
        self.stream.write(text)
        self.file.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()
        self.file.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def cpu_mem_gb():
    """Resident memory of this process in GiB."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**30
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def peak_gpu_mem_gb(device):
    """Peak CUDA memory since the previous call, in GiB (0 on CPU)."""
    if device.type != 'cuda':
        return 0.0
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return peak
