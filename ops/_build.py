"""Builds and loads the CUDA extensions of the ops (JIT, or the ahead-of-time build when it matches).

`load_op(name)` returns a handle whose attributes are the extension's operators, e.g.
`load_op('bias_act').bias_act(...)`. Each extension registers its operators with
`TORCH_LIBRARY` under a namespace that carries the hash of its sources, so differently built
copies never collide in one process, and no pybind11 is compiled (this keeps cold builds short).

JIT builds live in `$GANFORGE_EXTENSIONS_DIR`, else `<ganforge cache>/torch_extensions`, in a folder
named by a hash of the sources, PyTorch and CUDA versions, target architectures and flags. A build
runs in a private temporary folder that is renamed into place when complete (atomic publish),
under a lock file holding the owner's host and PID: other processes (e.g. the ranks of one node)
wait for it, a lock left by a dead process on this host is taken over, and waiting gives up
after `$GANFORGE_BUILD_TIMEOUT` seconds (default 1800) with a message naming the lock.
"""

import contextlib
import glob
import hashlib
import importlib.machinery
import json
import os
import re
import shutil
import sys
import time

from dnnlib import util

CSRC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc')
OPS = ('bias_act', 'upfirdn2d', 'modconv', 'filtered_lrelu')
COMMON_HEADERS = ('common.cuh',)
CXX_FLAGS = ('-O2',)  # cpp_extension adds the C++ standard PyTorch needs
NVCC_FLAGS = ('-O3',)
DEFAULT_ARCHS = ('8.0', '9.0+PTX')  # no GPU visible and no TORCH_CUDA_ARCH_LIST (CI)
AOT_MANIFEST = '_aot_manifest.json'  # written next to the ahead-of-time built libraries by setup_ext.py
AOT_DIR = os.path.dirname(os.path.abspath(__file__))  # where an installed package keeps them
HEADERS_NEEDED = ('cuda_runtime.h', 'cuda_fp16.h', 'cuda_bf16.h')

_loaded = {}  # op name -> OpLibrary, per process


class BuildError(RuntimeError):
    """A CUDA extension cannot be built or loaded; the message names the cause and the build log."""


class OpLibrary:
    """A loaded extension: attribute access returns its operators (torch.ops.<namespace>.<op>)."""

    def __init__(self, name, namespace, path, origin):
        self.name = name            # op name, e.g. 'bias_act'
        self.namespace = namespace  # TORCH_LIBRARY namespace, 'ganforge_<op>_<source hash>'
        self.path = path            # the shared library
        self.origin = origin        # 'jit' or 'aot'

    def __getattr__(self, attr):
        if attr.startswith('__'):
            raise AttributeError(attr)
        import torch
        return getattr(getattr(torch.ops, self.namespace), attr)

    def __repr__(self):
        return f'OpLibrary({self.name!r}, {self.origin}, {self.path})'


# ----------------------------------------------------------------------------
# Sources, flags and hashes.

def op_sources(name):
    """Compiled sources of op `name` (paths)."""
    if name not in OPS:
        raise ValueError(f'Unknown op {name!r}: expected one of {", ".join(OPS)}')
    # Distinct base names: setuptools maps x.cpp and x.cu to the same object file.
    return [os.path.join(CSRC_DIR, f'{name}.cpp'), os.path.join(CSRC_DIR, f'{name}_kernel.cu')]


def op_files(name):
    """Every file whose content the build of op `name` depends on (sources and headers)."""
    return op_sources(name) + [os.path.join(CSRC_DIR, f'{name}.h')] + [os.path.join(CSRC_DIR, h) for h in COMMON_HEADERS]


def source_hash(name):
    """Hash of op `name`'s sources, the compile flags, and the PyTorch and CUDA versions.

    It names the operator namespace and decides whether an ahead-of-time build can be used.
    """
    import torch
    h = hashlib.sha256()
    for path in op_files(name):
        try:
            with open(path, 'rb') as f:
                data = f.read()
        except OSError as e:
            raise BuildError(f'{name}: cannot read source {path}: {e}. Reinstall ganforge (the ops/csrc files must be present).') from e
        h.update(os.path.basename(path).encode() + b'\0' + data + b'\0')
    h.update(repr((CXX_FLAGS, NVCC_FLAGS, torch.__version__, torch.version.cuda)).encode())
    return h.hexdigest()[:16]


def namespace(name, src_hash):
    return f'ganforge_{name}_{src_hash}'


def build_hash(name, src_hash, archs, cuda_home):
    """Hash keying the JIT build folder: the source hash plus everything else the binary depends on."""
    h = hashlib.sha256(repr((name, src_hash, tuple(archs), os.path.realpath(cuda_home), sys.version_info[:2],
                             importlib.machinery.EXTENSION_SUFFIXES[0])).encode())
    return h.hexdigest()[:16]


def extensions_root():
    return os.environ.get('GANFORGE_EXTENSIONS_DIR') or util.make_cache_dir_path('torch_extensions')


# ----------------------------------------------------------------------------
# Toolchain discovery.

def _valid_cuda_home(path):
    return bool(path) and os.path.isfile(os.path.join(path, 'bin', 'nvcc')) and os.path.isfile(os.path.join(path, 'include', 'cuda_runtime.h'))


def find_cuda_home():
    """The CUDA toolkit folder (with bin/nvcc and include/cuda_runtime.h); raises BuildError if none."""
    tried = []
    for var in ('CUDA_HOME', 'CUDA_PATH'):
        value = os.environ.get(var)
        if value:
            if _valid_cuda_home(value):
                return value
            raise BuildError(f'{var}={value} is not a CUDA toolkit: it needs bin/nvcc and include/cuda_runtime.h. '
                             f'Point {var} at the toolkit folder (e.g. /usr/local/cuda-12.4) or unset it.')
    candidates = []
    nvcc = shutil.which('nvcc')
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    import torch
    want = torch.version.cuda or ''
    versioned = sorted(glob.glob('/usr/local/cuda-*'), key=lambda p: (not os.path.basename(p).endswith('-' + want), p))
    candidates += ['/usr/local/cuda'] + versioned + ['/opt/cuda']
    for path in candidates:
        tried.append(path)
        if _valid_cuda_home(path):
            return path
    raise BuildError('nvcc not found: no CUDA toolkit on PATH or in CUDA_HOME'
                     + (f' (nvcc on PATH is {nvcc}, but its folder has no include/cuda_runtime.h)' if nvcc else '')
                     + f'. Install the CUDA toolkit and set CUDA_HOME to its folder (tried: {", ".join(tried)}).')


def _site_cuda_include_dirs():
    """include/ folders of pip-installed NVIDIA wheels (nvidia/*/include next to torch)."""
    import torch
    site = os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__)))
    return sorted(glob.glob(os.path.join(site, 'nvidia', '*', 'include')))


def make_header_shim(cuda_home, shim_dir):
    """Fill `shim_dir` with links to the headers that pip's nvidia/*/include folders have and the toolkit lacks.

    PyTorch's headers may include cuBLAS/cuSPARSE/cuSOLVER headers that a minimal toolkit does not
    ship; the CUDA PyTorch wheels do. Linking only the missing entries keeps the toolkit's own
    headers first for everything else. Returns the names linked.
    """
    os.makedirs(shim_dir, exist_ok=True)
    have = set(os.listdir(os.path.join(cuda_home, 'include')))
    linked = []
    for inc in _site_cuda_include_dirs():
        for entry in sorted(os.listdir(inc)):
            if entry in have:
                continue
            have.add(entry)
            os.symlink(os.path.join(inc, entry), os.path.join(shim_dir, entry))
            linked.append(entry)
    return linked


def target_archs():
    """Compute capabilities to compile for: TORCH_CUDA_ARCH_LIST, else the visible GPUs, else DEFAULT_ARCHS."""
    env = os.environ.get('TORCH_CUDA_ARCH_LIST', '').strip()
    if env:
        archs = [a for a in re.split(r'[;\s,]+', env) if a]
        for a in archs:
            if not re.fullmatch(r'\d+\.\d+[a-z]?(\+PTX)?', a):
                raise BuildError(f'TORCH_CUDA_ARCH_LIST={env!r}: {a!r} is not a compute capability like 8.0 or 9.0+PTX')
        return archs
    import torch
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        return [f'{major}.{minor}' for major, minor in caps]
    return list(DEFAULT_ARCHS)


def archs_cover_devices(archs):
    """Whether code built for `archs` runs on every visible GPU (exact SASS, or PTX of an older arch)."""
    import torch
    if not torch.cuda.is_available():
        return True
    sass, ptx = set(), set()
    for a in archs:
        m = re.fullmatch(r'(\d+)\.(\d+)[a-z]?(\+PTX)?', a)
        if m is None:
            return False
        cap = (int(m.group(1)), int(m.group(2)))
        sass.add(cap)
        if m.group(3):
            ptx.add(cap)
    for i in range(torch.cuda.device_count()):
        cap = torch.cuda.get_device_capability(i)
        if cap not in sass and not any(p <= cap for p in ptx):
            return False
    return True


def check_toolchain(name):
    """Raise BuildError naming the first missing piece (CUDA PyTorch, nvcc, header, ninja, compiler); return CUDA_HOME."""
    import torch
    if torch.version.cuda is None:
        raise BuildError(f'{name}: this PyTorch ({torch.__version__}) is built without CUDA; install a CUDA build of PyTorch '
                         'to use the CUDA extensions, or run with GANFORGE_OPS=ref.')
    cuda_home = find_cuda_home()
    shim_sources = [os.path.join(cuda_home, 'include')] + _site_cuda_include_dirs()
    for header in HEADERS_NEEDED:
        if not any(os.path.isfile(os.path.join(d, header)) for d in shim_sources):
            raise BuildError(f'{name}: CUDA header {header} not found in {cuda_home}/include nor in nvidia/*/include of the '
                             'PyTorch wheel; the CUDA toolkit at CUDA_HOME is incomplete.')
    from torch.utils import cpp_extension
    if not cpp_extension.is_ninja_available():
        raise BuildError(f'{name}: ninja not found; install it (pip install ninja) to build the CUDA extensions.')
    cxx = os.environ.get('CXX', 'c++')
    if shutil.which(cxx) is None:
        raise BuildError(f'{name}: C++ compiler {cxx!r} not found (set CXX or install g++).')
    return cuda_home


def _use_cuda_home(cuda_home):
    """Make torch.utils.cpp_extension use `cuda_home` (it guesses once, at import, and may guess wrong)."""
    from torch.utils import cpp_extension
    os.environ.setdefault('CUDA_HOME', cuda_home)
    cpp_extension.CUDA_HOME = cuda_home


def _arch_env(archs):
    return ';'.join(archs)


def compile_flags(name, src_hash, include_dirs=()):
    """(cflags, cuda_cflags) for op `name` built under namespace of `src_hash`."""
    ns = f'-DGANFORGE_OP_NS={namespace(name, src_hash)}'
    inc = [f'-I{d}' for d in include_dirs]
    return list(CXX_FLAGS) + [ns] + inc, list(NVCC_FLAGS) + [ns] + inc


# ----------------------------------------------------------------------------
# Lock with stale-owner detection.

@contextlib.contextmanager
def build_lock(path, timeout=None, poll=0.5, ready=None, label='extension'):
    """Hold lock file `path` while building; yields True if the caller must build, False if `ready()` became true.

    The lock file is created atomically with its content (owner host, PID, start time). A lock whose
    owner is a dead process on this host is removed; a lock held by a live process (or another
    host) is waited for until `ready()` is true, the lock goes away, or `timeout` seconds pass
    (BuildError naming the lock and its owner).
    """
    timeout = float(os.environ.get('GANFORGE_BUILD_TIMEOUT', 1800)) if timeout is None else timeout
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock = util.LockFile(path)
    start = time.time()
    announced = False
    while True:
        if ready is not None and ready():
            yield False
            return
        if lock.try_acquire():
            break
        owner = lock.owner
        waited = time.time() - start
        if waited > timeout:
            who = f'process {owner.get("pid")} on {owner.get("host")}' if owner else 'an unknown process'
            raise BuildError(f'Timed out after {waited:.0f} s waiting for the {label} build lock {path} held by {who}. '
                             'If no build is running, delete that file; GANFORGE_BUILD_TIMEOUT sets the wait.')
        if not announced:
            who = f'process {owner.get("pid")} on {owner.get("host")}' if owner else 'another process'
            print(f'Waiting for {who} to finish building the {label} extension (lock {path})...', file=sys.stderr)
            announced = True
        time.sleep(poll)
    try:
        yield True
    finally:
        lock.release()


# ----------------------------------------------------------------------------
# Loading.

def _load_library(path):
    """Load a shared library that registers operators with TORCH_LIBRARY."""
    import torch
    torch.ops.load_library(path)


def _library_filename(name, src_hash):
    return f'{namespace(name, src_hash)}.so'


def find_aot(name, src_hash, package_dir=None):
    """Path of the ahead-of-time build of op `name` if its manifest entry matches `src_hash` and the GPUs, else None."""
    package_dir = package_dir or AOT_DIR
    manifest = os.path.join(package_dir, AOT_MANIFEST)
    if not os.path.isfile(manifest):
        return None
    try:
        with open(manifest, encoding='utf-8') as f:
            entry = json.load(f).get(name)
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get('source_hash') != src_hash:
        return None
    path = os.path.join(package_dir, entry.get('file', ''))
    if not entry.get('file') or not os.path.isfile(path) or not archs_cover_devices(entry.get('archs', [])):
        return None
    return path


def _jit_build(name, src_hash, cuda_home, archs, out_dir, log_path):
    """Compile op `name` into `out_dir` (ninja via torch.utils.cpp_extension), all output into `log_path`."""
    from torch.utils import cpp_extension
    shim = os.path.join(out_dir, 'shim_include')
    make_header_shim(cuda_home, shim)
    cflags, cuda_cflags = compile_flags(name, src_hash, include_dirs=[CSRC_DIR, shim])
    env_backup = {k: os.environ.get(k) for k in ('TORCH_CUDA_ARCH_LIST', 'MAX_JOBS')}
    os.environ['TORCH_CUDA_ARCH_LIST'] = _arch_env(archs)
    os.environ['MAX_JOBS'] = env_backup['MAX_JOBS'] or str(max(1, min(os.cpu_count() or 1, 4)))
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log_path, 'ab') as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                cpp_extension.load(name=namespace(name, src_hash), sources=op_sources(name), extra_cflags=cflags,
                                   extra_cuda_cflags=cuda_cflags, build_directory=out_dir, is_python_module=False, verbose=True)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _log_tail(path, lines=25):
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            text = f.read().splitlines()
    except OSError:
        return ''
    return '\n'.join(text[-lines:])


def _diagnose(log_text):
    """Name the missing piece from a compiler log, if recognizable."""
    m = re.search(r'fatal error: ([\w./-]+\.(?:h|hpp|cuh)): No such file', log_text)
    if m:
        return f'missing header {m.group(1)}'
    if re.search(r'nvcc: (not found|No such file)', log_text):
        return 'nvcc not found'
    if 'unsupported GNU version' in log_text:
        return 'host compiler version not supported by nvcc (set CXX / NVCC_CCBIN to a supported gcc)'
    return 'compilation failed'


def jit_load(name, verbose=True):
    """Build op `name` (or reuse the cached build) and load it."""
    src_hash = source_hash(name)
    cuda_home = check_toolchain(name)
    _use_cuda_home(cuda_home)
    archs = target_archs()
    root = extensions_root()
    key = build_hash(name, src_hash, archs, cuda_home)
    final_dir = os.path.join(root, f'{name}-{key}')
    lib_path = os.path.join(final_dir, _library_filename(name, src_hash))
    log_path = os.path.join(root, f'{name}-{key}.log')

    def ready():
        return os.path.isfile(lib_path)

    if not ready():
        os.makedirs(root, exist_ok=True)
        with build_lock(os.path.join(root, f'{name}-{key}.lock'), ready=ready, label=name) as must_build:
            if must_build and not ready():  # not published while we waited for the lock
                for leftover in glob.glob(os.path.join(root, f'.tmp-{name}-{key}-*')):  # of killed builds; we hold the lock
                    shutil.rmtree(leftover, ignore_errors=True)
                tmp_dir = os.path.join(root, f'.tmp-{name}-{key}-{os.getpid()}')
                os.makedirs(tmp_dir)
                with open(log_path, 'w', encoding='utf-8') as log:
                    log.write(f'# ganforge build of {name}: archs {";".join(archs)}, CUDA_HOME {cuda_home}\n')
                if verbose:
                    print(f'Building {name} extension (first use, ~1 min)... ', end='', file=sys.stderr, flush=True)
                t0 = time.time()
                try:
                    _jit_build(name, src_hash, cuda_home, archs, tmp_dir, log_path)
                except Exception as e:
                    if verbose:
                        print('failed', file=sys.stderr, flush=True)
                    shutil.rmtree(tmp_dir, ignore_errors=True)
                    tail = _log_tail(log_path)
                    raise BuildError(f'{name}: building the CUDA extension failed ({_diagnose(tail + str(e))}); '
                                     f'build log: {log_path}\n{tail}') from e
                os.replace(tmp_dir, final_dir)  # atomic publish
                if verbose:
                    print(f'done ({time.time() - t0:.0f} s)', file=sys.stderr, flush=True)
                return OpLibrary(name, namespace(name, src_hash), lib_path, 'jit')  # loaded by cpp_extension.load
    try:
        _load_library(lib_path)
    except OSError as e:
        raise BuildError(f'{name}: cannot load the built extension {lib_path}: {e}. Delete {final_dir} to rebuild; '
                         f'build log: {log_path}') from e
    return OpLibrary(name, namespace(name, src_hash), lib_path, 'jit')


def load_op(name, verbose=True):
    """The loaded CUDA extension of op `name` (one of OPS), cached per process.

    Uses the ahead-of-time build when its source hash matches, else builds (once per machine and
    source version) with the JIT loader. Raises BuildError naming what is missing and the build log.
    """
    lib = _loaded.get(name)
    if lib is not None:
        return lib
    src_hash = source_hash(name)
    aot = find_aot(name, src_hash)
    if aot is not None:
        try:
            _load_library(aot)
        except OSError as e:
            raise BuildError(f'{name}: cannot load the ahead-of-time built extension {aot}: {e}. '
                             'Reinstall ganforge, or remove that file to use the JIT build.') from e
        lib = OpLibrary(name, namespace(name, src_hash), aot, 'aot')
    else:
        lib = jit_load(name, verbose=verbose)
    _loaded[name] = lib
    return lib

