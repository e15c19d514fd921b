"""Torch-free utilities: EasyDict, construction of objects by dotted name, cached and
checksummed URL opening, atomic file writes, and small formatting helpers."""

import contextlib
import hashlib
import importlib
import io
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid

#----------------------------------------------------------------------------

class EasyDict(dict):
    """dict whose items are also reachable as attributes (`d.key`)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

#----------------------------------------------------------------------------
# Construction by name.

def get_module_from_obj_name(obj_name):
    """Split 'pkg.mod.attr.sub' into (imported module, 'attr.sub') by importing the longest module prefix."""
    parts = obj_name.split('.')
    if not obj_name or any(not p.isidentifier() for p in parts):
        raise ValueError(f'Invalid object name {obj_name!r}: expected a dotted Python name such as "training.loss.StyleGAN2Loss"')
    for i in range(len(parts), 0, -1):
        module_name = '.'.join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            # Only swallow "this prefix is not a module"; a missing import inside the module is a real error.
            if e.name is not None and (module_name == e.name or module_name.startswith(e.name + '.')):
                continue
            raise
        return module, '.'.join(parts[i:])
    raise ImportError(f'Cannot import any module prefix of {obj_name!r}')


def get_obj_by_name(name):
    """Return the object ('module.attr...') named by a dotted path."""
    module, attr_path = get_module_from_obj_name(name)
    obj = module
    for part in attr_path.split('.') if attr_path else []:
        if not hasattr(obj, part):
            raise AttributeError(f'{name!r}: module {module.__name__!r} has no attribute path {attr_path!r}')
        obj = getattr(obj, part)
    return obj


def call_func_by_name(*args, func_name=None, **kwargs):
    """Call the function named by `func_name` (a dotted path) with the given arguments."""
    if func_name is None:
        raise TypeError('call_func_by_name() requires func_name')
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise TypeError(f'{func_name!r} is not callable')
    return func(*args, **kwargs)


def construct_class_by_name(*args, class_name=None, **kwargs):
    """Construct the class named by `class_name` (a dotted path) with the given arguments."""
    if class_name is None:
        raise TypeError('construct_class_by_name() requires class_name')
    cls = get_obj_by_name(class_name)
    if not isinstance(cls, type):
        raise TypeError(f'{class_name!r} is not a class')
    return cls(*args, **kwargs)

#----------------------------------------------------------------------------
# Files.

def make_cache_dir_path(*paths):
    """Path inside the ganforge cache dir: $GANFORGE_CACHE_DIR, else $XDG_CACHE_HOME/ganforge, else ~/.cache/ganforge."""
    if os.environ.get('GANFORGE_CACHE_DIR'):
        root = os.environ['GANFORGE_CACHE_DIR']
    elif os.environ.get('XDG_CACHE_HOME'):
        root = os.path.join(os.environ['XDG_CACHE_HOME'], 'ganforge')
    else:
        root = os.path.join(os.path.expanduser('~'), '.cache', 'ganforge')
    return os.path.join(root, *paths)


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Write `path` through a temporary file in the same directory, renamed into place on success.

    A crash or exception leaves the previous file (if any) untouched and removes the temporary.
    Temporary names start with '.tmp-' so that directory scans can ignore leftovers of a killed process.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f'atomic_write(): mode must be "w" or "wb", got {mode!r}')
    path = os.fspath(path)
    dirname = os.path.dirname(os.path.abspath(path))
    os.makedirs(dirname, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-' + os.path.basename(path) + '.', dir=dirname)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path, chunk_size=1 << 20):
    """Hex SHA-256 of a file's contents."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            h.update(chunk)
    return h.hexdigest()


def is_url(obj, allow_file_urls=False):
    """True if `obj` is a string that looks like an http(s) URL (or file:// when allowed)."""
    if not isinstance(obj, str) or '://' not in obj:
        return False
    scheme = urllib.parse.urlparse(obj).scheme
    return scheme in ('http', 'https') or (allow_file_urls and scheme == 'file')


def _check_sha256(data_or_path, sha256, what):
    if sha256 is None:
        return
    if isinstance(data_or_path, (bytes, bytearray)):
        got = hashlib.sha256(data_or_path).hexdigest()
    else:
        got = sha256_file(data_or_path)
    if got.lower() != sha256.lower():
        raise IOError(f'Checksum mismatch for {what}: expected sha256 {sha256}, got {got}. '
                      f'The file is corrupt or not the one expected; delete it and retry.')


URL_TIMEOUT_ENV = 'GANFORGE_URL_TIMEOUT'
DEFAULT_URL_TIMEOUT = 30.0


def url_timeout():
    """Seconds to wait for a server to connect or to send the next bytes: $GANFORGE_URL_TIMEOUT, else 30."""
    value = os.environ.get(URL_TIMEOUT_ENV)
    if not value:
        return DEFAULT_URL_TIMEOUT
    try:
        timeout = float(value)
    except ValueError:
        timeout = float('nan')
    if not (timeout > 0 and timeout < float('inf')):
        raise ValueError(f'${URL_TIMEOUT_ENV}={value!r}: expected a positive number of seconds')
    return timeout


class URLTimeoutError(IOError):
    """A server did not connect or did not send data within the timeout."""


def open_url(url, cache_dir=None, num_attempts=3, verbose=True, return_filename=False, cache=True, sha256=None, timeout=None):
    """Open a local path, a file:// URL or an http(s) URL and return a binary file object.

    http(s) downloads are cached under `cache_dir` (default: the ganforge cache dir 'downloads'),
    keyed by the hash of the URL, written atomically, and verified against `sha256` when given
    (the cached copy is verified too). With `return_filename=True` the local path is returned instead.

    Args:
        url:             path, 'file://...' or 'http(s)://...'.
        cache_dir:       where downloads are cached.
        num_attempts:    download attempts before giving up.
        verbose:         print download progress to stderr.
        return_filename: return a path instead of an open file.
        cache:           cache http(s) downloads (required when return_filename=True).
        sha256:          expected hex SHA-256 of the content, or None.
        timeout:         seconds to wait for the connection and for each read (default `url_timeout()`);
                         a server that stays silent that long fails with URLTimeoutError naming the URL,
                         without further attempts.
    """
    if not isinstance(url, (str, os.PathLike)):
        raise TypeError(f'open_url(): expected a path or URL string, got {type(url).__name__}')
    url = os.fspath(url)
    if num_attempts < 1:
        raise ValueError('open_url(): num_attempts must be >= 1')
    if return_filename and not cache:
        raise ValueError('open_url(): return_filename=True requires cache=True')

    # Local file.
    if not is_url(url, allow_file_urls=True):
        if not os.path.isfile(url):
            raise FileNotFoundError(f'No such file: {url}')
        _check_sha256(url, sha256, url)
        return url if return_filename else open(url, 'rb')
    if url.startswith('file://'):
        path = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'No such file: {path} (from {url})')
        _check_sha256(path, sha256, url)
        return path if return_filename else open(path, 'rb')

    # Cached download.
    if cache_dir is None:
        cache_dir = make_cache_dir_path('downloads')
    url_md5 = hashlib.md5(url.encode('utf-8')).hexdigest()
    if cache:
        basename = re.sub(r'[^0-9A-Za-z_.-]', '_', os.path.basename(urllib.parse.urlparse(url).path)) or 'download'
        cache_path = os.path.join(cache_dir, f'{url_md5}_{basename}')
        if os.path.isfile(cache_path):
            try:
                _check_sha256(cache_path, sha256, cache_path)
            except IOError:
                os.remove(cache_path)  # corrupt cached copy: fetch again
            else:
                return cache_path if return_filename else open(cache_path, 'rb')

    timeout = url_timeout() if timeout is None else float(timeout)
    data = None
    for attempt in range(num_attempts):
        try:
            data = _download(url, verbose=verbose, timeout=timeout)
            _check_sha256(data, sha256, url)
            break
        except (OSError, ValueError) as e:
            if isinstance(e, TimeoutError) or isinstance(getattr(e, 'reason', None), TimeoutError):
                raise URLTimeoutError(f'No answer from {url} within {timeout:g} s (connect or read timeout; set '
                                      f'${URL_TIMEOUT_ENV}=SECONDS to wait longer). On an offline machine, download '
                                      f'the file elsewhere and pass its local path instead.') from e
            if attempt == num_attempts - 1:
                raise IOError(f'Failed to download {url} after {num_attempts} attempt(s): {e}. '
                              f'On an offline machine, download the file elsewhere and pass its local path instead.') from e
            time.sleep(min(2 ** attempt, 10))

    if cache:
        with atomic_write(cache_path) as f:
            f.write(data)
        return cache_path if return_filename else open(cache_path, 'rb')
    return io.BytesIO(data)


def _download(url, verbose, timeout):
    req = urllib.request.Request(url, headers={'User-Agent': 'ganforge'})
    with urllib.request.urlopen(req, timeout=timeout) as res:
        total = int(res.headers.get('Content-Length') or 0)
        chunks, done, last = [], 0, 0.0
        while True:
            chunk = res.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            done += len(chunk)
            if verbose and time.time() - last > 0.5:
                last = time.time()
                pct = f' ({100 * done / total:.0f}%)' if total else ''
                print(f'\rDownloading {url}: {done / 2**20:.1f} MiB{pct}', end='', file=sys.stderr, flush=True)
        if verbose:
            print(f'\rDownloading {url}: {done / 2**20:.1f} MiB done', file=sys.stderr, flush=True)
        data = b''.join(chunks)
        if total and len(data) != total:
            raise IOError(f'truncated download: got {len(data)} of {total} bytes')
        return data

#----------------------------------------------------------------------------
# Formatting.

def format_time(seconds):
    """Human-readable duration: '42s', '3m 05s', '2h 07m', '1d 03h'."""
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 3600:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 86400:
        return f'{s // 3600}h {(s // 60) % 60:02d}m'
    return f'{s // 86400}d {(s // 3600) % 24:02d}h'


def unique_id():
    """Short random hex id (for temporary names)."""
    return uuid.uuid4().hex[:12]

#----------------------------------------------------------------------------
# Owner-recording lock files (the kernel build lock, the run-dir lock).

def pid_alive(pid):
    """True unless no process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock_file(path):
    """The owner info (dict: host, pid, time) recorded in lock file `path`, or None (absent or unreadable)."""
    try:
        with open(path, encoding='utf-8') as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


class LockFile:
    """A lock file created atomically with its owner's host, PID and start time (staged in a file of
    our own, then hard-linked into place). A lock whose owner is a dead process on this host is taken
    over; `owner` holds the holder's info after a failed `try_acquire()`."""

    def __init__(self, path):
        self.path = path
        self.owner = None
        host = socket.gethostname()
        self._staging = os.path.join(os.path.dirname(path) or '.',
                                     f'.tmp-{os.path.basename(path)}-{host}-{os.getpid()}-{threading.get_ident()}')
        self.info = {'host': host, 'pid': os.getpid(), 'time': time.time(), 'tmp': os.path.basename(self._staging)}

    def _stale(self, owner):
        try:
            return owner.get('host') == self.info['host'] and not pid_alive(int(owner.get('pid', -1)))
        except (TypeError, ValueError, OverflowError):
            return False

    def try_acquire(self):
        """Take the lock: True on success; False when a live process holds it (see `owner`)."""
        with open(self._staging, 'w', encoding='utf-8') as f:
            json.dump(self.info, f)
        try:
            while True:
                try:
                    os.link(self._staging, self.path)  # fails if the lock exists
                    return True
                except FileExistsError:
                    pass
                owner = read_lock_file(self.path)
                if owner is None and os.path.exists(self.path):
                    time.sleep(0.1)  # being written by its owner: read again
                    owner = read_lock_file(self.path)
                if owner is not None and self._stale(owner):
                    print(f'Taking over the stale lock {self.path} of dead process {owner.get("pid")}', file=sys.stderr)
                    with contextlib.suppress(FileNotFoundError):
                        if read_lock_file(self.path) == owner:
                            os.remove(self.path)
                    if str(owner.get('tmp', '')).startswith('.tmp-'):  # its staging file
                        with contextlib.suppress(FileNotFoundError):
                            os.remove(os.path.join(os.path.dirname(self.path), os.path.basename(owner['tmp'])))
                    continue
                self.owner = owner
                return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._staging)

    def release(self):
        """Remove the lock if it is still ours."""
        with contextlib.suppress(FileNotFoundError):
            if read_lock_file(self.path) == self.info:
                os.remove(self.path)
