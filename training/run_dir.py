"""Run directories: `outdir/NNNNN-desc` (NVlabs naming), claimed atomically, and one writer per
run dir, enforced by a lock file held for the life of the run.

The lock `run_dir/.ganforge-lock` is created atomically with its content (host, PID, start time):
staged in a file of our own, then hard-linked into place, which fails if a lock exists. A lock
whose owner is a dead process on this host is stale and taken over; any other lock refuses the
run with one line naming the holder's host and PID (a lock of another host cannot be checked:
delete the file if that process is gone).
"""

import os
import re

import dnnlib.util

LOCK_NAME = '.ganforge-lock'
_RUN_DIR_RE = re.compile(r'(\d{5})-(.+)')


class RunDirError(RuntimeError):
    """The run dir cannot be used (held by another process, not writable)."""


def list_run_dirs(outdir):
    """[(run id, name)] of the `NNNNN-desc` folders in `outdir`, oldest id first."""
    if not os.path.isdir(outdir):
        return []
    found = []
    for name in os.listdir(outdir):
        m = _RUN_DIR_RE.fullmatch(name)
        if m and os.path.isdir(os.path.join(outdir, name)):
            found.append((int(m.group(1)), name))
    return sorted(found)


def next_run_dir(outdir, desc):
    """`outdir/NNNNN-desc` with NNNNN one above the highest existing run id (not created)."""
    ids = [run_id for run_id, _name in list_run_dirs(outdir)]
    return os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')


def claim_new_run_dir(outdir, desc):
    """Create and return a fresh `outdir/NNNNN-desc`; two processes never get the same one."""
    os.makedirs(outdir, exist_ok=True)
    while True:
        path = next_run_dir(outdir, desc)
        try:
            os.mkdir(path)  # atomic: exactly one concurrent caller succeeds for a given id
            return path
        except FileExistsError:
            continue  # taken meanwhile: the next scan sees it and moves past it

#----------------------------------------------------------------------------

def read_lock(run_dir):
    """The lock owner's info (host, pid, time) or None."""
    return dnnlib.util.read_lock_file(os.path.join(run_dir, LOCK_NAME))


class RunDirLock:
    """Exclusive lock of a run dir (dnnlib.util.LockFile); `release()` (or the context manager's exit) removes it."""

    def __init__(self, run_dir):
        self._lock = dnnlib.util.LockFile(os.path.join(run_dir, LOCK_NAME))
        self.path, self.info = self._lock.path, self._lock.info
        if not self._lock.try_acquire():
            owner = self._lock.owner or {}
            raise RunDirError(f'run dir {run_dir} is in use by process {owner.get("pid", "?")} on host {owner.get("host", "?")} '
                              f'(lock {self.path}); if that process is gone, delete the lock file')

    def release(self):
        self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.release()
