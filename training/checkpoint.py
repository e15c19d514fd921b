"""Training checkpoints and run directories: naming, finding the newest valid one, keeping the last
few, RNG state capture, and the `--resume=auto` choice of run directory.

A training checkpoint `training-state-NNNNNN.pt` (NNNNNN = kimg, rounded down) is a network snapshot
(see `torch_utils.snapshot`) whose `extra['training_state']` holds: optimizer states, loss
state (pl_mean), ADA p and controller state, counters (cur_nimg, cur_tick, batch_idx), the RNG
states of every rank and the sampler position. It contains plain data only and loads with
`torch.load(weights_only=True)`; the training state sits in the snapshot's `extra` dict. Files are written through `dnnlib.util.atomic_write`, so a file with
the final name is complete; leftovers `.tmp-*` of a killed writer are ignored (and removed by `prune`).
"""

import glob
import json
import os
import random
import re
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
        try:
            os.remove(path)
        except OSError:
            pass

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
