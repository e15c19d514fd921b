"""Process plumbing of a training run: preemption signals, the log.txt tee, DataLoader worker
lifetime, memory figures, and the one-line description of a fatal error.

Signals. SIGTERM (SLURM preemption) and the first Ctrl-C only set a flag (`StopSignals`): the loop
writes a checkpoint at its next check and returns. DataLoader workers ignore both (`worker_init`),
since a signal sent to the whole process group must not kill them before that checkpoint; they are
therefore stopped by the main process instead: the loop drops its iterator when it ends for any
reason, and `stop_child_processes` kills whatever worker is left before an error exit. (Python's
exit handler would otherwise send the ignored SIGTERM and wait for the worker for ever.)
"""

import contextlib
import errno
import multiprocessing
import os
import signal
import sys
import threading

import torch

#----------------------------------------------------------------------------
# Signals and workers.

def worker_init(_worker_id):
    """DataLoader `worker_init_fn`: SIGTERM / Ctrl-C of the process group are the main process's business."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stop_child_processes():
    """Kill this process's remaining multiprocessing children (DataLoader workers ignore SIGTERM)."""
    for child in multiprocessing.active_children():
        child.kill()
        child.join(timeout=10)


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

#----------------------------------------------------------------------------
# log.txt: everything printed, from the options printout to the last line.

class LogTee:
    """Copy stdout and stderr into `path` (append) until `close`; a no-op when path is None or when
    this process already tees into the same file (train.py starts it before the loop does)."""

    def __init__(self, path):
        self.file = None
        self.streams = (sys.stdout, sys.stderr)
        if path is None or (isinstance(sys.stdout, _TeeStream) and sys.stdout.path == os.path.abspath(path)):
            return
        self.file = open(path, 'a', encoding='utf-8')
        sys.stdout = _TeeStream(sys.stdout, self.file, os.path.abspath(path))
        sys.stderr = _TeeStream(sys.stderr, self.file, os.path.abspath(path))

    def close(self):
        if self.file is not None:
            sys.stdout, sys.stderr = self.streams
            self.file.close()
            self.file = None


class _TeeStream:
    def __init__(self, stream, file, path):
        self.stream, self.file, self.path = stream, file, path

    def write(self, text):
        self.stream.write(text)
        if not self.file.closed:
            self.file.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()
        if not self.file.closed:
            self.file.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)

#----------------------------------------------------------------------------
# Fatal errors.

def _chain(e):
    seen = []
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def _is_disk_full(e):
    return any(isinstance(link, OSError) and link.errno == errno.ENOSPC for link in _chain(e))


@contextlib.contextmanager
def naming_disk_full(path):
    """Re-raise a full disk inside the block as OSError(ENOSPC) naming `path` (torch.save reports it as
    'unexpected pos ...' with the OSError only in the context)."""
    try:
        yield
    except Exception as e:
        if _is_disk_full(e) and not (isinstance(e, OSError) and e.filename):
            raise OSError(errno.ENOSPC, 'No space left on device', path) from e
        raise


def describe_failure(e, where=None):
    """One line naming the cause of exception `e`: 'no space left on <path>' for a full disk, else
    the innermost meaningful message (for a failed local rank: the last line of its traceback)."""
    for link in _chain(e):
        if isinstance(link, OSError) and link.errno == errno.ENOSPC:
            return f'no space left on {link.filename or where or "the output device"}'
    text = str(e).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1:  # a rank's traceback inside the message: its last exception line is the cause
        causes = [line for line in lines if line.split(':')[0].split('.')[-1].endswith(('Error', 'Exception', 'Interrupt'))]
        if causes:
            return causes[-1]
        return lines[0]
    return f'{type(e).__name__}: {text}' if text else type(e).__name__

#----------------------------------------------------------------------------
# Memory figures for the progress line.

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
