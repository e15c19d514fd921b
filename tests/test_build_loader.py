"""CPU tests of the extension loader (ops/_build.py) and the ahead-of-time build helper (setup_ext.py).

No compiler is run here: the build step, library loading and toolchain discovery are replaced
with fakes where needed, so these run anywhere.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

import setup_ext
from ops import _build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def _write_lock(path, host, pid):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump({'host': host, 'pid': pid, 'time': time.time()}, f)

# ----------------------------------------------------------------------------
# Lock.


def test_stale_lock_of_dead_process_is_recovered(tmp_path, capsys):
    lock = str(tmp_path / 'op.lock')
    dead = _dead_pid()
    _write_lock(lock, socket.gethostname(), dead)
    with _build.build_lock(lock, timeout=5, poll=0.01) as must_build:
        assert must_build is True
        with open(lock, encoding='utf-8') as f:
            assert json.load(f)['pid'] == os.getpid()
    assert not os.path.exists(lock)  # released
    assert f'dead process {dead}' in capsys.readouterr().err
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.tmp-')]


def test_live_lock_times_out_naming_owner(tmp_path):
    lock = str(tmp_path / 'op.lock')
    _write_lock(lock, socket.gethostname(), os.getpid())  # alive: this process
    t0 = time.time()
    with pytest.raises(_build.BuildError, match=r'Timed out .* build lock .*op\.lock held by process \d+ on .*delete that file'):
        with _build.build_lock(lock, timeout=0.3, poll=0.05):
            pass
    assert time.time() - t0 < 5
    assert os.path.exists(lock)  # someone else's lock is left alone


def test_lock_of_other_host_is_not_stale(tmp_path):
    lock = str(tmp_path / 'op.lock')
    _write_lock(lock, socket.gethostname() + '-elsewhere', _dead_pid())
    with pytest.raises(_build.BuildError, match='Timed out'):
        with _build.build_lock(lock, timeout=0.2, poll=0.05):
            pass


def test_waiter_stops_when_result_is_published(tmp_path):
    lock = str(tmp_path / 'op.lock')
    _write_lock(lock, socket.gethostname(), os.getpid())
    flag = tmp_path / 'done'
    threading.Timer(0.2, flag.touch).start()
    with _build.build_lock(lock, timeout=10, poll=0.02, ready=flag.exists) as must_build:
        assert must_build is False

# ----------------------------------------------------------------------------
# JIT loader with a fake compiler.


@pytest.fixture
def fake_toolchain(tmp_path, monkeypatch):
    """load_op with a fake compiler: builds are counted, libraries are not really loaded."""
    calls = {'builds': 0, 'loads': []}

    def fake_build(name, src_hash, cuda_home, archs, out_dir, log_path):
        calls['builds'] += 1
        time.sleep(0.2)
        with open(os.path.join(out_dir, _build._library_filename(name, src_hash)), 'wb') as f:
            f.write(b'fake')

    monkeypatch.setenv('GANFORGE_EXTENSIONS_DIR', str(tmp_path / 'ext'))
    monkeypatch.setattr(_build, 'check_toolchain', lambda name: '/fake/cuda')
    monkeypatch.setattr(_build, '_use_cuda_home', lambda cuda_home: None)
    monkeypatch.setattr(_build, 'target_archs', lambda: ['8.0', '9.0'])
    monkeypatch.setattr(_build, '_jit_build', fake_build)
    monkeypatch.setattr(_build, '_load_library', lambda path: calls['loads'].append(path))
    monkeypatch.setattr(_build, '_loaded', {})
    monkeypatch.setattr(_build, 'AOT_DIR', str(tmp_path / 'no_aot'))
    return calls


def test_concurrent_loads_build_once(fake_toolchain, tmp_path, capsys):
    results = []
    threads = [threading.Thread(target=lambda: results.append(_build.jit_load('bias_act'))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake_toolchain['builds'] == 1
    assert len(results) == 3 and len({r.path for r in results}) == 1
    assert os.path.isfile(results[0].path)
    err = capsys.readouterr().err
    assert err.count('Building bias_act extension (first use, ~1 min)... ') == 1 and 'done (' in err
    # Published atomically: no temporary folder or lock left behind.
    leftovers = [n for n in os.listdir(tmp_path / 'ext') if n.startswith('.tmp-') or n.endswith('.lock')]
    assert leftovers == []
    # A new process (here: a fresh cache) reuses the published build.
    _build._loaded.clear()
    lib = _build.load_op('bias_act')
    # The two threads that waited loaded the published library, then the fresh load_op did.
    assert fake_toolchain['builds'] == 1 and lib.origin == 'jit' and fake_toolchain['loads'] == [lib.path] * 3
    assert _build.load_op('bias_act') is lib  # cached per process


def test_killed_build_does_not_block(fake_toolchain, tmp_path):
    src_hash = _build.source_hash('upfirdn2d')
    key = _build.build_hash('upfirdn2d', src_hash, ['8.0', '9.0'], '/fake/cuda')
    root = tmp_path / 'ext'
    root.mkdir()
    lock = root / f'upfirdn2d-{key}.lock'
    code = (f'import sys, time; sys.path.insert(0, {ROOT!r}); from ops import _build\n'
            f'with _build.build_lock({str(lock)!r}):\n    time.sleep(60)\n')
    proc = subprocess.Popen([sys.executable, '-c', code])
    try:
        deadline = time.time() + 60
        while not lock.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert lock.exists(), 'the child never took the lock'
    finally:
        proc.kill()  # like Ctrl-C / OOM kill in the middle of a build
        proc.wait()
    assert lock.exists()
    (root / f'.tmp-upfirdn2d-{key}-999999').mkdir()  # the killed build's half-written folder
    lib = _build.jit_load('upfirdn2d')
    assert fake_toolchain['builds'] == 1 and os.path.isfile(lib.path)
    assert sorted(os.listdir(root)) == [f'upfirdn2d-{key}', f'upfirdn2d-{key}.log']


def test_build_failure_names_missing_header_and_log(fake_toolchain, monkeypatch):
    def failing_build(name, src_hash, cuda_home, archs, out_dir, log_path):
        with open(log_path, 'a', encoding='utf-8') as f:
            f.write('/x/include/ATen/cuda/CUDAContext.h:5:10: fatal error: cusparse.h: No such file or directory\n')
        raise RuntimeError('Error building extension')

    monkeypatch.setattr(_build, '_jit_build', failing_build)
    with pytest.raises(_build.BuildError, match=r'modconv: building the CUDA extension failed \(missing header cusparse\.h\); build log: .*modconv-\w+\.log'):
        _build.load_op('modconv')
    root = os.environ['GANFORGE_EXTENSIONS_DIR']
    assert [n for n in os.listdir(root) if n.startswith('.tmp-') or n.endswith('.lock')] == []
    assert 'modconv' not in _build._loaded

# ----------------------------------------------------------------------------
# Hashes and toolchain discovery.


def test_source_hash_follows_sources(tmp_path, monkeypatch):
    csrc = tmp_path / 'csrc'
    shutil.copytree(_build.CSRC_DIR, csrc)
    monkeypatch.setattr(_build, 'CSRC_DIR', str(csrc))
    before = {op: _build.source_hash(op) for op in _build.OPS}
    with open(csrc / 'bias_act_kernel.cu', 'a', encoding='utf-8') as f:
        f.write('\n// changed\n')
    after = {op: _build.source_hash(op) for op in _build.OPS}
    assert after['bias_act'] != before['bias_act']
    assert after['upfirdn2d'] == before['upfirdn2d'] and after['modconv'] == before['modconv']
    with open(csrc / 'common.cuh', 'a', encoding='utf-8') as f:
        f.write('\n// changed\n')
    assert all(_build.source_hash(op) != after[op] for op in _build.OPS)
    (csrc / 'modconv.h').unlink()
    with pytest.raises(_build.BuildError, match=r'modconv: cannot read source .*modconv\.h'):
        _build.source_hash('modconv')


def test_build_hash_follows_archs_and_toolkit():
    h = _build.source_hash('bias_act')
    a = _build.build_hash('bias_act', h, ['8.0', '9.0'], '/usr/local/cuda-a')
    assert a == _build.build_hash('bias_act', h, ['8.0', '9.0'], '/usr/local/cuda-a')
    assert a != _build.build_hash('bias_act', h, ['8.6'], '/usr/local/cuda-a')
    assert a != _build.build_hash('bias_act', h, ['8.0', '9.0'], '/usr/local/cuda-b')
    assert a != _build.build_hash('bias_act', 'other', ['8.0', '9.0'], '/usr/local/cuda-a')


def test_unknown_op():
    with pytest.raises(ValueError, match="Unknown op 'conv'"):
        _build.load_op('conv')


def test_missing_nvcc_names_nvcc_and_cuda_home(monkeypatch):
    monkeypatch.delenv('CUDA_HOME', raising=False)
    monkeypatch.delenv('CUDA_PATH', raising=False)
    monkeypatch.setattr(_build.shutil, 'which', lambda name: None)
    monkeypatch.setattr(_build, '_valid_cuda_home', lambda path: False)
    with pytest.raises(_build.BuildError, match=r'nvcc not found.*set CUDA_HOME'):
        _build.find_cuda_home()


def test_bad_cuda_home_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv('CUDA_HOME', str(tmp_path))
    with pytest.raises(_build.BuildError, match=r'CUDA_HOME=.* is not a CUDA toolkit: it needs bin/nvcc'):
        _build.find_cuda_home()
    monkeypatch.setattr(_build, '_loaded', {})
    monkeypatch.setattr(_build, 'AOT_DIR', str(tmp_path))
    with pytest.raises(_build.BuildError, match='CUDA_HOME'):
        _build.load_op('bias_act')


def test_cuda_home_found_behind_nvcc_wrapper(tmp_path, monkeypatch):
    # nvcc on PATH may be a wrapper script outside the toolkit (as /usr/local/bin/nvcc here).
    toolkit = tmp_path / 'cuda-x'
    (toolkit / 'bin').mkdir(parents=True)
    (toolkit / 'include').mkdir()
    (toolkit / 'bin' / 'nvcc').write_text('')
    (toolkit / 'include' / 'cuda_runtime.h').write_text('')
    monkeypatch.delenv('CUDA_HOME', raising=False)
    monkeypatch.delenv('CUDA_PATH', raising=False)
    monkeypatch.setattr(_build.shutil, 'which', lambda name: str(tmp_path / 'bin' / 'nvcc'))
    monkeypatch.setattr(_build.glob, 'glob', lambda pattern: [str(toolkit)])
    real_valid = _build._valid_cuda_home
    monkeypatch.setattr(_build, '_valid_cuda_home', lambda p: p == str(toolkit) and real_valid(p))
    assert _build.find_cuda_home() == str(toolkit)


def test_header_shim_links_only_missing_headers(tmp_path, monkeypatch):
    cuda_home = tmp_path / 'cuda'
    (cuda_home / 'include').mkdir(parents=True)
    (cuda_home / 'include' / 'cuda_runtime.h').write_text('toolkit')
    wheel = tmp_path / 'nvidia' / 'cu13' / 'include'
    wheel.mkdir(parents=True)
    (wheel / 'cuda_runtime.h').write_text('wheel')
    (wheel / 'cusparse.h').write_text('wheel')
    monkeypatch.setattr(_build, '_site_cuda_include_dirs', lambda: [str(wheel)])
    shim = tmp_path / 'shim'
    assert _build.make_header_shim(str(cuda_home), str(shim)) == ['cusparse.h']
    assert sorted(os.listdir(shim)) == ['cusparse.h']
    assert (shim / 'cusparse.h').read_text() == 'wheel'


def test_target_archs(monkeypatch):
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.6 9.0+PTX')
    assert _build.target_archs() == ['8.6', '9.0+PTX']
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.6;sm_90')
    with pytest.raises(_build.BuildError, match=r"TORCH_CUDA_ARCH_LIST=.*'sm_90' is not a compute capability"):
        _build.target_archs()
    monkeypatch.delenv('TORCH_CUDA_ARCH_LIST')
    import torch
    if not torch.cuda.is_available():
        archs = _build.target_archs()
        assert '8.0' in archs and any(a.startswith('9.0') for a in archs)

# ----------------------------------------------------------------------------
# Ahead-of-time build.


def _aot_package(tmp_path, op, src_hash, archs=('8.0', '9.0+PTX')):
    pkg = tmp_path / 'pkg'
    pkg.mkdir(exist_ok=True)
    (pkg / f'_aot_{op}.so').write_bytes(b'fake')
    setup_ext.write_manifest({op: {'source_hash': src_hash, 'archs': list(archs), 'file': f'_aot_{op}.so'}}, str(pkg))
    return pkg


def test_aot_build_used_when_hash_matches(fake_toolchain, tmp_path, monkeypatch):
    pkg = _aot_package(tmp_path, 'bias_act', _build.source_hash('bias_act'))
    monkeypatch.setattr(_build, 'AOT_DIR', str(pkg))
    lib = _build.load_op('bias_act')
    assert lib.origin == 'aot' and lib.path == str(pkg / '_aot_bias_act.so')
    assert fake_toolchain['loads'] == [lib.path] and fake_toolchain['builds'] == 0
    assert lib.namespace == f'ganforge_bias_act_{_build.source_hash("bias_act")}'


def test_aot_build_ignored_when_stale(fake_toolchain, tmp_path, monkeypatch):
    pkg = _aot_package(tmp_path, 'bias_act', '0123456789abcdef')
    monkeypatch.setattr(_build, 'AOT_DIR', str(pkg))
    assert _build.find_aot('bias_act', _build.source_hash('bias_act')) is None
    lib = _build.load_op('bias_act')
    assert lib.origin == 'jit' and fake_toolchain['builds'] == 1
    # Missing library file or a manifest without the op: not used either.
    good = _aot_package(tmp_path, 'upfirdn2d', _build.source_hash('upfirdn2d'))
    (good / '_aot_upfirdn2d.so').unlink()
    assert _build.find_aot('upfirdn2d', _build.source_hash('upfirdn2d'), package_dir=str(good)) is None
    assert _build.find_aot('modconv', _build.source_hash('modconv'), package_dir=str(good)) is None


def test_setup_ext_without_flag_builds_nothing(monkeypatch):
    monkeypatch.delenv('GANFORGE_BUILD_OPS', raising=False)
    assert setup_ext.get_ext_modules() == [] and setup_ext.get_cmdclass() == {}
    monkeypatch.setenv('GANFORGE_BUILD_OPS', 'yes')
    with pytest.raises(ValueError, match='GANFORGE_BUILD_OPS=.yes. is invalid'):
        setup_ext.get_ext_modules()


def test_setup_ext_declares_extensions(monkeypatch, tmp_path):
    try:
        _build.check_toolchain('test')
    except _build.BuildError as e:
        pytest.skip(f'no CUDA toolchain: {e}')
    monkeypatch.setenv('GANFORGE_BUILD_OPS', '1')
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.0;9.0')
    monkeypatch.setattr(setup_ext, 'SHIM_DIR', str(tmp_path / 'shim'))
    exts = setup_ext.get_ext_modules()
    assert [e.name for e in exts] == ['ops._aot_bias_act', 'ops._aot_upfirdn2d', 'ops._aot_modconv', 'ops._aot_filtered_lrelu']
    for ext in exts:
        op = ext.ganforge_info['op']
        assert ext.sources == [f'ops/csrc/{op}.cpp', f'ops/csrc/{op}_kernel.cu']
        ns = f'-DGANFORGE_OP_NS=ganforge_{op}_{_build.source_hash(op)}'
        assert ns in ext.extra_compile_args['cxx'] and ns in ext.extra_compile_args['nvcc']
        assert ext.ganforge_info['archs'] == ['8.0', '9.0']
    assert 'build_ext' in setup_ext.get_cmdclass()
