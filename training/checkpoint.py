"""Training checkpoint files: names, finding the newest usable one, keeping the last few, RNG
state as plain data, and per-step seeds.

A training checkpoint `training-state-<label>.pt` is a network snapshot (see
`torch_utils.snapshot`) whose `extra['training_state']` holds what `training.run_state.RunState`
registers (see there and docs/ARCHITECTURE.md). It contains plain data only and loads with
`torch.load(weights_only=True)`. Files are written through `dnnlib.util.atomic_write`, so a file
with the final name is complete; `.tmp-*` leftovers of a killed writer are ignored by every scan
and removed when a run starts (`remove_stale_temporaries`).

Labels: `<kimg:06d>` (NVlabs, kimg rounded down) when ticks are whole kimg; with fractional
ticks, several snapshots can fall into one kimg, so the label is `<kimg:06d>.<rest:03d>` (the
images past the whole kimg) unless the count is a whole kimg.
"""

import contextlib
import glob
import io
import json
import os
import random
import re
import warnings

import numpy as np
import torch

import dnnlib
from torch_utils import snapshot

_CHECKPOINT_RE = re.compile(r'training-state-(\d+)(?:\.(\d{3}))?\.pt')

#----------------------------------------------------------------------------
# Names.

def kimg_label(cur_nimg, kimg_per_tick):
    """File label of a snapshot after `cur_nimg` images (see module docstring)."""
    kimg, rest = divmod(int(cur_nimg), 1000)
    if float(kimg_per_tick).is_integer() or rest == 0:
        return f'{kimg:06d}'
    return f'{kimg:06d}.{rest:03d}'


def checkpoint_name(label):
    return f'training-state-{label}.pt'


def snapshot_name(label):
    return f'network-snapshot-{label}.pt'


def fakes_name(label):
    return f'fakes{label}.png'

#----------------------------------------------------------------------------
# Finding and pruning checkpoints.

def list_checkpoints(run_dir):
    """Paths of the complete checkpoints in `run_dir`, oldest first (by label, then mtime)."""
    if not os.path.isdir(run_dir):
        return []
    found = []
    for name in os.listdir(run_dir):
        m = _CHECKPOINT_RE.fullmatch(name)  # '.tmp-training-state-...' never matches: partial writes are ignored
        if m:
            path = os.path.join(run_dir, name)
            found.append((int(m.group(1)), int(m.group(2) or 0), os.path.getmtime(path), path))
    return [path for *_key, path in sorted(found)]


def read_checkpoint(path, data=None):
    """Load a checkpoint or snapshot file (or its bytes `data`) as plain data (no code runs). Errors name the
    file: snapshot.SnapshotCorruptError for a damaged one, SnapshotRefusedError for content that is not plain data."""
    return snapshot.load_plain(io.BytesIO(data) if data is not None else path, path)


def training_state_of(data):
    """The `training_state` dict of loaded checkpoint data, or None for a plain snapshot."""
    extra = data.get('extra') if isinstance(data, dict) else None
    state = extra.get('training_state') if isinstance(extra, dict) else None
    return state if isinstance(state, dict) else None


def find_latest_checkpoint(run_dir, with_data=False):
    """The newest checkpoint in `run_dir` that loads and holds a training state: its path, or with
    `with_data` (path, file bytes, training_state); None if there is none.

    Each file is read once; damaged ones (e.g. truncated by a full disk) are skipped with a warning naming them.
    """
    for path in reversed(list_checkpoints(run_dir)):
        try:
            with open(path, 'rb') as f:
                data = f.read()
            state = training_state_of(read_checkpoint(path, data))
        except (OSError, snapshot.SnapshotError) as e:
            warnings.warn(f'Skipping unusable checkpoint {path} ({e})')
            continue
        if state is not None:
            return (path, data, state) if with_data else path
        warnings.warn(f'{path}: not a ganforge training state; skipped')
    return None


def prune_checkpoints(run_dir, keep):
    """Delete all but the newest `keep` checkpoints (None or 0: keep all)."""
    if keep is not None and keep > 0:
        for path in list_checkpoints(run_dir)[:-keep]:
            os.remove(path)


def remove_stale_temporaries(run_dir):
    """Delete `.tmp-*` files of killed writers (call while holding the run dir's lock); returns their names."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), '.tmp-*')):
        with contextlib.suppress(OSError):  # another process may have removed it
            os.remove(path)
            removed.append(os.path.basename(path))
    return removed

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

def write_json(path, obj):
    """Write `obj` as indented JSON atomically."""
    with dnnlib.util.atomic_write(path, 'w') as f:
        json.dump(obj, f, indent=2)
        f.write('\n')
