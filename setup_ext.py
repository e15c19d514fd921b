"""Ahead-of-time build of the ganforge CUDA extensions, for setup.py.

    GANFORGE_BUILD_OPS=1 pip install --no-build-isolation .

compiles ops/csrc into `ops._aot_<op>` libraries plus `ops/_aot_manifest.json`, which records each
library's source hash and target architectures. At run time `ops._build.load_op` uses a library
only when its source hash equals the hash of the installed sources (same sources, flags, PyTorch
and CUDA versions) and its architectures cover the visible GPUs; otherwise it JIT-builds.
Without GANFORGE_BUILD_OPS=1 nothing is compiled and torch is not imported.
"""

import json
import os
import shutil

ROOT = os.path.dirname(os.path.abspath(__file__))
SHIM_DIR = os.path.join(ROOT, 'build', 'ganforge_shim_include')  # links to CUDA headers the toolkit lacks


def building_ops():
    """Whether GANFORGE_BUILD_OPS=1 asks for the ahead-of-time build."""
    value = os.environ.get('GANFORGE_BUILD_OPS', '0').strip()
    if value not in ('', '0', '1'):
        raise ValueError(f'GANFORGE_BUILD_OPS={value!r} is invalid: use 1 to build the CUDA extensions, 0 or unset to skip')
    return value == '1'


def get_ext_modules():
    """CUDAExtension list for setup(ext_modules=...): empty unless GANFORGE_BUILD_OPS=1."""
    if not building_ops():
        return []
    try:
        from torch.utils.cpp_extension import CUDAExtension
    except ImportError as e:
        raise RuntimeError('GANFORGE_BUILD_OPS=1 needs PyTorch importable while building; install torch first and run '
                           '`GANFORGE_BUILD_OPS=1 pip install --no-build-isolation .`') from e

    from ops import _build
    cuda_home = _build.check_toolchain('ahead-of-time build')  # BuildError names the missing tool
    _build._use_cuda_home(cuda_home)
    archs = _build.target_archs()
    os.environ['TORCH_CUDA_ARCH_LIST'] = ';'.join(archs)  # read by BuildExtension when it compiles
    shutil.rmtree(SHIM_DIR, ignore_errors=True)
    _build.make_header_shim(cuda_home, SHIM_DIR)
    extensions = []
    for op in _build.OPS:
        src_hash = _build.source_hash(op)
        cflags, cuda_cflags = _build.compile_flags(op, src_hash, include_dirs=[SHIM_DIR])
        ext = CUDAExtension(name=f'ops._aot_{op}', sources=[os.path.relpath(p, ROOT) for p in _build.op_sources(op)],
                            extra_compile_args={'cxx': cflags, 'nvcc': cuda_cflags})
        ext.ganforge_info = {'op': op, 'source_hash': src_hash, 'archs': archs}
        extensions.append(ext)
    print(f'ganforge: building CUDA extensions {", ".join(_build.OPS)} for archs {";".join(archs)} with CUDA_HOME={cuda_home}')
    return extensions


def write_manifest(entries, package_dir):
    """Write ops/_aot_manifest.json: {op: {'source_hash', 'archs', 'file'}} (atomically)."""
    from dnnlib import util
    from ops import _build
    path = os.path.join(package_dir, _build.AOT_MANIFEST)
    with util.atomic_write(path, 'w') as f:
        json.dump(entries, f, indent=2, sort_keys=True)
    os.chmod(path, 0o644)  # readable by every user of a system-wide install


def get_cmdclass():
    """cmdclass for setup(): a build_ext that compiles with ninja and writes the manifest; empty unless GANFORGE_BUILD_OPS=1."""
    if not building_ops():
        return {}
    from torch.utils.cpp_extension import BuildExtension

    class BuildOps(BuildExtension):
        def run(self):
            super().run()
            by_dir = {}
            for ext in self.extensions:
                info = getattr(ext, 'ganforge_info', None)
                if info is None:
                    continue
                path = self.get_ext_fullpath(ext.name)
                by_dir.setdefault(os.path.dirname(path), {})[info['op']] = dict(
                    source_hash=info['source_hash'], archs=info['archs'], file=os.path.basename(path))
            for package_dir, entries in by_dir.items():
                write_manifest(entries, package_dir)

    return {'build_ext': BuildOps.with_options(use_ninja=True)}
