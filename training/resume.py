"""Where a run writes and what it starts from, decided once (on rank 0) by `plan_run`.

A plan names the run dir, the resume file and its kind ('exact': a training state, continued bit
for bit; 'weights': a network snapshot or NVlabs pickle, fine-tuning), carries the file's bytes
(read once, format probed once; other ranks receive them with the plan) and the options inherited
from the continued run.

`--resume=auto` looks at every run dir in --outdir that holds a checkpoint and continues the newest
one whose recorded training_options.json agrees with the command (except the keys that may change
between the parts of one run, e.g. --kimg); the dir name plays no part. When none agrees, a fresh
run starts and a note names the option in which the nearest candidate differs. In the chosen dir,
a damaged newest checkpoint falls back to the previous one; if none is usable the run stops with
an error (it never restarts at kimg 0 inside the old dir). A run that already reached --kimg is
`complete`: train.py reports that and exits without writing anything.
"""

import copy
import dataclasses
import json
import os


import dnnlib
from torch_utils import snapshot
from training import checkpoint as ckpt
from training import network_loader
from training import run_dir as rundir

EXACT = 'exact'
WEIGHTS = 'weights'


class ResumeError(OSError):
    """The resume request cannot be honoured; the message names --resume and the file."""


@dataclasses.dataclass
class ResumePlan:
    run_dir:   str
    resume:    str = None      # path or URL of the file to start from; None = fresh start
    kind:      str = None      # EXACT, WEIGHTS or None
    data:      bytes = None    # the file's bytes (read once)
    inherited: dict = dataclasses.field(default_factory=dict)  # options taken from the continued run
    complete:  bool = False    # --resume=auto: the run already reached total_kimg
    cur_nimg:  int = 0         # where an exact continuation starts
    note:      str = None      # why --resume=auto did not continue an existing run

#----------------------------------------------------------------------------
# The resume file.

def read_resume_file(path_or_url):
    """The bytes of a --resume file or URL; errors name --resume and the file."""
    is_url = dnnlib.util.is_url(path_or_url, allow_file_urls=True)
    if not is_url and os.path.exists(path_or_url) and not os.path.isfile(path_or_url):
        raise ResumeError(f'--resume: {path_or_url} is not a regular file (a training-state-*.pt, network-snapshot-*.pt, NVlabs .pkl, URL, or "auto")')
    if not is_url and not os.path.isfile(path_or_url):
        raise ResumeError(f'--resume: no such file: {path_or_url} (a training-state-*.pt, network-snapshot-*.pt, NVlabs .pkl, URL, or "auto")')
    try:
        with dnnlib.util.open_url(path_or_url) as f:
            return f.read()
    except OSError as e:
        raise ResumeError(f'--resume: cannot read {path_or_url}: {e}') from e


def inspect_resume_data(data, name):
    """(kind, training_state or None) of a resume file's bytes; ResumeError names the file."""
    fmt = network_loader.probe_format(data)
    if fmt == network_loader.NVLABS:
        return WEIGHTS, None
    if fmt != network_loader.GANFORGE:
        raise ResumeError(f'--resume: {name} is not a ganforge snapshot/checkpoint (torch.save zip) or an NVlabs network pickle'
                          + (' (the file is empty)' if len(data) == 0 else ''))
    try:
        loaded = ckpt.read_checkpoint(name, data)
    except snapshot.SnapshotError as e:  # names the file and says damaged or refused
        raise ResumeError(f'--resume: {e}') from e
    state = ckpt.training_state_of(loaded)
    return (EXACT, state) if state is not None else (WEIGHTS, None)

#----------------------------------------------------------------------------
# Options recorded in a run dir.

def read_options(run_dir):
    """The run's training_options.json as a dict, or None when it has none; errors name the file."""
    path = os.path.join(run_dir, 'training_options.json')
    if not os.path.isfile(path):
        return None
    try:
        with open(path, 'r', encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ResumeError(f'--resume=auto: cannot read {path}: {e}') from e


_ABSENT = object()


def get_option(options, key, default=None):
    """options[key], where a dotted key names a nested option ('loss_kwargs.blur_init_sigma'); `default` when absent."""
    for part in key.split('.'):
        if not isinstance(options, dict) or part not in options:
            return default
        options = options[part]
    return options


def set_option(options, key, value):
    """options[key] = value for a plain or dotted key (the parent dicts must exist)."""
    *parents, last = key.split('.')
    for part in parents:
        options = options[part]
    options[last] = value


def _without(options, keys):
    options = copy.deepcopy(options)
    for key in keys:
        *parents, last = key.split('.')
        parent = get_option(options, '.'.join(parents)) if parents else options  # None when absent
        if isinstance(parent, dict):
            parent.pop(last, None)
    return options


def option_differences(recorded, options, ignore_keys):
    """Sorted top-level keys in which `recorded` (JSON) and `options` differ, except `ignore_keys` (plain or dotted)."""
    new = _without(json.loads(json.dumps(options)), ignore_keys)  # same normalization (tuples -> lists) as the stored file
    recorded = _without(recorded, ignore_keys)
    return sorted(k for k in set(recorded) | set(new) if recorded.get(k) != new.get(k))


def describe_differences(run_dir, recorded, options, diff):
    new = json.loads(json.dumps(options))
    details = '; '.join(f'{k}: run has {recorded.get(k)!r}, command gives {new.get(k)!r}' for k in diff[:3])
    return f'{run_dir} was started with different options ({details})'

#----------------------------------------------------------------------------

def plan_run(outdir, desc, options, resume=None, run_dir=None, ignore_keys=(), inherit_keys=(), weights_options=None):
    """Decide the run dir and resume file (rank 0; creates nothing). See the module docstring.

    Args:
        options:         the new run's training options (compared with recorded ones for --resume=auto).
        resume:          None, 'auto', or a path / URL.
        run_dir:         --run-dir (exact dir) or None (a fresh NNNNN-desc under outdir, or the matched one).
        ignore_keys:     options that may differ between the parts of one run.
        inherit_keys:    options a --resume=auto continuation takes from the run it continues.
        weights_options: options a weights-only resume sets (NVlabs transfer learning).
    """
    if resume is None:
        return ResumePlan(run_dir=run_dir)
    if resume != 'auto':
        data = read_resume_file(resume)
        kind, state = inspect_resume_data(data, resume)
        return ResumePlan(run_dir=run_dir, resume=resume, kind=kind, data=data,
                          inherited=dict(weights_options or {}) if kind == WEIGHTS else {},
                          cur_nimg=int(state['cur_nimg']) if state else 0)

    # --resume=auto: the run dir to continue.
    note = None
    if run_dir is not None:
        recorded = read_options(run_dir) if os.path.isdir(run_dir) else None
        if recorded is not None and ckpt.list_checkpoints(run_dir):
            diff = option_differences(recorded, options, ignore_keys)
            if diff:
                raise ResumeError(f'--resume=auto: {describe_differences(run_dir, recorded, options, diff)}. Re-run the original '
                                  f'command, pass --resume=<checkpoint path> to fine-tune, or use another --run-dir.')
        chosen = run_dir if os.path.isdir(run_dir) and ckpt.list_checkpoints(run_dir) else None
    else:
        chosen, nearest = None, None
        for _run_id, name in reversed(rundir.list_run_dirs(outdir)):
            candidate = os.path.join(outdir, name)
            if not ckpt.list_checkpoints(candidate):
                continue
            recorded = read_options(candidate)
            if recorded is None:
                continue
            diff = option_differences(recorded, options, ignore_keys)
            if not diff:
                chosen = candidate
                break
            if nearest is None or len(diff) < len(nearest[2]):
                nearest = (candidate, recorded, diff)
        if chosen is None and nearest is not None:
            note = (f'--resume=auto: no run in {outdir} matches this command, so a new run starts; the nearest, '
                    f'{describe_differences(*nearest[:2], options, nearest[2])}')
    if chosen is None:
        return ResumePlan(run_dir=run_dir, note=note)

    found = ckpt.find_latest_checkpoint(chosen, with_data=True)
    if found is None:
        raise ResumeError(f'--resume=auto: {chosen} has checkpoints but none is usable (see the warnings); not restarting at kimg 0 '
                          f'inside it. Pass --resume=<network-snapshot> to fine-tune from its weights, or use another --outdir.')
    path, data, state = found
    recorded = read_options(chosen) or {}
    inherited = {k: get_option(recorded, k) for k in inherit_keys if get_option(recorded, k, _ABSENT) is not _ABSENT}
    total_kimg = options.get('total_kimg')
    complete = total_kimg is not None and int(state['cur_nimg']) >= float(total_kimg) * 1000
    return ResumePlan(run_dir=chosen, resume=path, kind=EXACT, data=data, inherited=inherited, complete=complete,
                      cur_nimg=int(state['cur_nimg']))
