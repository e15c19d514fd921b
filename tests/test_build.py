"""`build` tests: compile and load every CUDA extension with the real toolchain (nvcc, ninja, a
C++ compiler and a CUDA build of PyTorch; no GPU needed), and run the kernels' code on the CPU
through an emulation of the CUDA execution model. Skipped with the reason where the toolchain is
missing. Cold, the four builds take about 1-2 minutes on 2 cores; cached builds (same sources,
versions and archs) load instantly.
"""

import ctypes
import os
import re
import shutil
import subprocess

import pytest
import torch

from ops import _build, _cuda_bias_act


@pytest.fixture(scope='module')
def toolchain():
    try:
        return _build.check_toolchain('build test')
    except _build.BuildError as e:
        pytest.skip(f'cannot build CUDA extensions here: {e}')


@pytest.mark.build
@pytest.mark.parametrize('name,op,args', [
    ('bias_act', 'bias_act', (None, None, None, 1, 3, 0, False, 0.2, 1.0, -1.0)),
    ('upfirdn2d', 'upfirdn2d', (torch.ones(4), 2, 2, 1, 1, 1, 1, 1, 1, False, 1.0)),
    ('modconv', 'modulate', (torch.ones(2, 4), True, True)),
    ('filtered_lrelu', 'filtered_lrelu', (torch.ones(4), torch.ones(4), None, None, 2, 1, 1, 8, 8, 2, 0, 0, 3, 3, 0, 1.0, 0.2, -1.0, False)),
])
def test_extension_builds_and_loads(toolchain, name, op, args):
    lib = _build.load_op(name)
    assert lib.namespace == f'ganforge_{name}_{_build.source_hash(name)}'
    assert _build.load_op(name) is lib  # cached per process
    kernel = getattr(lib, op)
    # The operator is registered and its C++ argument checks run (CPU tensors are refused by name).
    x = torch.ones(2, 4, 3, 3)
    first = 'weight' if name == 'modconv' else 'x'
    with pytest.raises(RuntimeError, match=f'{op}: {first} must be a CUDA tensor, got device cpu'):
        kernel(x, *args)


# ----------------------------------------------------------------------------
# The kernels' logic on the CPU: the .cu files compiled as host C++ (g++) against a small
# emulation of the CUDA execution model (one std::thread per CUDA thread, __syncthreads as a
# barrier, shared memory as statics, warp shuffles through a shared array), then compared with
# the references. This checks indexing, tiling, vectorization and the derivative formulas in CI,
# where no GPU exists; timing and the real compiler's code generation still need a GPU.

EMU_HEADER = r'''
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>
#include <cuda_runtime_api.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
using std::tanh; using std::exp; using std::log1p; using std::expm1; using std::sqrt;
#undef __global__
#define __global__
#undef __shared__
#define __shared__ static
#define __launch_bounds__(x)
struct EmuIdx { unsigned int x = 0, y = 0, z = 0; };
inline thread_local EmuIdx threadIdx, blockIdx;
inline EmuIdx blockDim, gridDim;
inline std::barrier<>* emu_barrier = nullptr;
inline std::vector<double> emu_shfl;
inline void __syncthreads() { emu_barrier->arrive_and_wait(); }
template <typename T> T __shfl_down_sync(unsigned, T v, int off) {
    const unsigned t = threadIdx.x;
    emu_shfl[t] = double(v);
    __syncthreads();
    T r = ((t & 31) + off < 32 && t + off < blockDim.x) ? T(emu_shfl[t + off]) : v;
    __syncthreads();
    return r;
}
inline cudaError_t emu_last_error() { return cudaSuccess; }
#define cudaGetLastError emu_last_error
// Runs the blocks one after another; the threads of a block run concurrently.
inline void emu_launch(dim3 grid, dim3 block, const std::function<void()>& body) {
    gridDim = {grid.x, grid.y, grid.z};
    blockDim = {block.x, 1, 1};
    emu_shfl.assign(block.x, 0.0);
    std::barrier<> bar(block.x);
    emu_barrier = &bar;
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < block.x; t++)
        threads.emplace_back([&, t] {
            threadIdx = {t, 0, 0};
            for (unsigned bz = 0; bz < grid.z; bz++) for (unsigned by = 0; by < grid.y; by++) for (unsigned bx = 0; bx < grid.x; bx++) {
                blockIdx = {bx, by, bz};
                body();
                bar.arrive_and_wait();  // the block is done with its shared memory
            }
        });
    for (auto& th : threads) th.join();
}
'''

EMU_API = r'''
#include <cstdint>
#include "bias_act.h"
#include "upfirdn2d.h"
#include "modconv.h"
#include "filtered_lrelu.h"
extern "C" int emu_bias_act(const void* r, const void* b, const void* dy, const void* gg, void* out, int64_t numel, int64_t size_b,
                            int64_t step_b, int dtype, int mode, int act, int ref_y, double alpha, double gain, double clamp, int vec) {
    BiasActParams p{r, b, dy, gg, out, numel, size_b, step_b, dtype, mode, act, ref_y != 0, alpha, gain, clamp, vec != 0};
    return bias_act_launch(p, nullptr);
}
extern "C" int emu_upfirdn2d(const void* x, const void* f, void* y, int64_t n, int64_t c, int in_h, int in_w, int out_h, int out_w,
                             const int64_t* sx, int upx, int upy, int downx, int downy, int padx0, int pady0, int fw, int fh,
                             int fsep, int fflip, double gain, int nhwc, int dtype) {
    Upfirdn2dParams p;
    p.x = x; p.f = f; p.y = y; p.n = n; p.c = c; p.in_h = in_h; p.in_w = in_w; p.out_h = out_h; p.out_w = out_w;
    for (int i = 0; i < 4; i++) p.sx[i] = sx[i];
    p.up_x = upx; p.up_y = upy; p.down_x = downx; p.down_y = downy; p.pad_x0 = padx0; p.pad_y0 = pady0;
    p.f_w = fw; p.f_h = fh; p.f_sep = fsep != 0; p.f_flip = fflip != 0; p.gain = gain; p.y_nhwc = nhwc != 0; p.dtype = dtype;
    return upfirdn2d_launch(p, nullptr);
}
extern "C" int emu_modulate(const void* weight, const void* styles, void* w, void* d, int64_t n, int64_t o, int64_t i, int64_t k, int dtype) {
    ModulateParams p{weight, styles, w, d, n, o, i, k, dtype};
    return modulate_launch(p, nullptr);
}
// tile[0], tile[1]: the output tile to use (0: the one filtered_lrelu_tile picks); receives the tile used.
extern "C" int emu_filtered_lrelu(const void* x, const void* b, const void* f1, const void* f2, void* y, const void* si, void* so,
                                  int64_t n, int64_t c, const int64_t* sx, const int* sizes, const int* geom, const int* filt,
                                  int mode, double gain, double slope, double clamp, int dtype, int* tile) {
    FilteredLreluParams p;
    p.x = x; p.b = b; p.f1 = f1; p.f2 = f2; p.y = y;
    p.si = static_cast<const uint8_t*>(si); p.so = static_cast<uint8_t*>(so);
    p.n = n; p.c = c;
    for (int i = 0; i < 4; i++) p.sx[i] = sx[i];
    p.in_h = sizes[0]; p.in_w = sizes[1]; p.m_h = sizes[2]; p.m_w = sizes[3]; p.out_h = sizes[4]; p.out_w = sizes[5];
    p.up = geom[0]; p.pad1_x = geom[1]; p.pad1_y = geom[2]; p.down = geom[3]; p.pad2_x = geom[4]; p.pad2_y = geom[5];
    p.f1_w = filt[0]; p.f1_h = filt[1]; p.f1_sep = filt[2] != 0; p.f2_w = filt[3]; p.f2_h = filt[4]; p.f2_sep = filt[5] != 0;
    p.mode = mode; p.gain = gain; p.slope = slope; p.clamp = clamp; p.dtype = dtype;
    filtered_lrelu_tile(p);
    if (p.tile_h == 0) return -1;
    if (tile[0] > 0) { p.tile_h = tile[0]; p.tile_w = tile[1]; }
    tile[0] = p.tile_h; tile[1] = p.tile_w;
    if (x == nullptr) return 0;  // tile choice only
    return filtered_lrelu_launch(p, nullptr);
}
'''

DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}
EMU_TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3.2e-2, torch.float64: 1e-12}


def _host_source(cu_path):
    """A kernel .cu file rewritten as host C++ for the emulator (launches become emu_launch calls)."""
    with open(cu_path, encoding='utf-8') as f:
        src = f.read()
    src = src.replace('#include "common.cuh"', '#include "emu.h"\n#include "common.cuh"')
    src, launches = re.subn(r'(\w+<[^;]*?>)<<<(.+?), (\w+), 0, stream>>>\(p\);',
                            lambda m: f'emu_launch(dim3({m.group(2)}), dim3({m.group(3)}), [&] {{ {m.group(1)}(p); }});', src)
    assert launches > 0, f'no kernel launches recognized in {cu_path}'
    return src.replace('__device__ __forceinline__', 'inline').replace('__device__', '')


@pytest.fixture(scope='module')
def emulator(toolchain, tmp_path_factory):
    cxx = shutil.which(os.environ.get('CXX', 'g++')) or shutil.which('g++')
    if cxx is None:
        pytest.skip('no host C++ compiler for the kernel emulator')
    work = tmp_path_factory.mktemp('kernel_emulator')
    for name in os.listdir(_build.CSRC_DIR):
        path = os.path.join(_build.CSRC_DIR, name)
        if name.endswith('.h'):
            shutil.copy(path, work / name)
        elif name.endswith('.cuh'):
            with open(path, encoding='utf-8') as f:
                (work / name).write_text(f.read().replace('__device__ __forceinline__', 'inline'))
        elif name.endswith('_kernel.cu'):
            (work / (name[:-3] + '_host.cpp')).write_text(_host_source(path))
    (work / 'emu.h').write_text(EMU_HEADER)
    (work / 'emu_api.cpp').write_text(EMU_API)
    sources = sorted(str(p) for p in work.glob('*.cpp'))
    cmd = [cxx, '-std=c++20', '-O1', '-fPIC', '-shared', '-pthread', f'-I{work}', f'-I{os.path.join(toolchain, "include")}',
           *sources, '-o', str(work / 'libemu.so')]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, 'emulator build failed:\n' + result.stderr[-4000:]
    lib = ctypes.CDLL(str(work / 'libemu.so'))
    i64, dbl, ptr, i32 = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p, ctypes.c_int
    lib.emu_bias_act.argtypes = [ptr] * 5 + [i64] * 3 + [i32] * 4 + [dbl] * 3 + [i32]
    lib.emu_upfirdn2d.argtypes = [ptr] * 3 + [i64] * 2 + [i32] * 4 + [ctypes.POINTER(i64)] + [i32] * 10 + [dbl, i32, i32]
    lib.emu_modulate.argtypes = [ptr] * 4 + [i64] * 4 + [i32]
    ints = ctypes.POINTER(i32)
    lib.emu_filtered_lrelu.argtypes = [ptr] * 7 + [i64] * 2 + [ctypes.POINTER(i64), ints, ints, ints, i32, dbl, dbl, dbl, i32, ints]
    return lib


def _ptr(t):
    return None if t is None else t.data_ptr()


def _assert_emulated(got, want, dtype, name):
    err = ((got.double() - want.double()).abs() / (1 + want.double().abs())).max().item()
    assert err <= EMU_TOL[dtype], f'{name} {dtype}: relative error {err:.3g} > {EMU_TOL[dtype]:.3g}'


@pytest.mark.build
@pytest.mark.parametrize('dtype', list(DTYPE_CODE))
def test_bias_act_kernel_emulated(emulator, dtype):
    from ops.bias_act import _bias_act_ref as bias_act_ref
    from tests.test_cuda_ops import _fake_bias_act
    for act, idx in _cuda_bias_act.ACT_INDEX.items():
        for layout, vec, clamp in (('contiguous', 1, None), ('channels_last', 1, 1.3), ('contiguous', 0, 1.3)):
            x = (torch.randn(2, 5, 7, 9, dtype=torch.float64) * 2).to(dtype)
            x = x.contiguous(memory_format=torch.channels_last if layout == 'channels_last' else torch.contiguous_format)
            b = torch.randn(5, dtype=torch.float64).to(dtype)
            dy, gg = torch.randn_like(x), torch.randn_like(x)
            limit = -1.0 if clamp is None else clamp
            y = bias_act_ref(x.double(), b.double(), 1, act, 0.2, 1.4, clamp).to(dtype)
            runs = [(mode, False, x, b) for mode in (0, 1, 2)]
            if _cuda_bias_act.REF[act] == 'y':
                runs += [(mode, True, y, None) for mode in (1, 2)]
            for mode, ref_y, r, bias in runs:
                out = torch.empty_like(x)
                assert emulator.emu_bias_act(_ptr(r), _ptr(bias), _ptr(dy), _ptr(gg), _ptr(out), x.numel(), 5, x.stride(1),
                                             DTYPE_CODE[dtype], mode, idx, int(ref_y), 0.2, 1.4, limit, vec) == 0
                want = _fake_bias_act(r, bias, dy.double(), gg.double(), 1, idx, mode, ref_y, 0.2, 1.4, limit)
                _assert_emulated(out, want, dtype, f'{act} {layout} vec={vec} clamp={clamp} mode={mode} ref_y={ref_y}')


@pytest.mark.build
@pytest.mark.parametrize('dtype', list(DTYPE_CODE))
def test_upfirdn2d_kernel_emulated(emulator, dtype):
    from tests.test_cuda_ops import UPFIRDN_CASES, _filter, _layouts, _ref_upfirdn2d
    for fspec, up, down, pad, flip, gain in UPFIRDN_CASES:
        f = _filter(fspec)
        fw = f.shape[-1]
        fh = f.shape[0] if f.ndim == 2 else fw
        shapes = ([1, 2, 9, 11], [1, 1, 20, 140]) if dtype == torch.float32 else ([1, 2, 9, 11],)  # the wide one spans tiles
        for shape in shapes:
            x64 = torch.randn(shape, dtype=torch.float64).to(dtype)
            want = _ref_upfirdn2d(x64.double(), f.double(), up, down, pad, flip, gain)
            for layout, x in _layouts(x64).items():
                nhwc = layout == 'channels_last' and shape[1] > 1
                y = torch.empty(want.shape, dtype=dtype).contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
                ff = f.to(torch.float64 if dtype == torch.float64 else torch.float32)
                strides = (ctypes.c_int64 * 4)(*x.stride())
                assert emulator.emu_upfirdn2d(_ptr(x), _ptr(ff), _ptr(y), shape[0], shape[1], shape[2], shape[3], want.shape[2], want.shape[3],
                                              strides, up[0], up[1], down[0], down[1], pad[0], pad[2], fw, fh, int(f.ndim == 1),
                                              int(not flip), gain, int(nhwc), DTYPE_CODE[dtype]) == 0
                _assert_emulated(y, want, dtype, f'filter {fspec} up {up} down {down} pad {pad} {layout} {shape}')


@pytest.mark.build
@pytest.mark.parametrize('dtype', list(DTYPE_CODE))
def test_modulate_kernel_emulated(emulator, dtype):
    from ops import modconv
    for o, i, k in ((3, 5, 3), (2, 300, 3), (3, 33, 1)):
        weight = (torch.randn(o, i, k, k, dtype=torch.float64) / (i * k * k) ** 0.5).to(dtype)
        styles = torch.randn(2, i, dtype=torch.float64).to(dtype)
        for demodulate, fused in ((True, True), (True, False), (False, True)):
            w = torch.empty(2, o, i, k, k, dtype=dtype) if fused else None
            d = torch.empty(2, o, dtype=dtype) if demodulate else None
            assert emulator.emu_modulate(_ptr(weight), _ptr(styles), _ptr(w), _ptr(d), 2, o, i, k * k, DTYPE_CODE[dtype]) == 0
            want_w, want_d = modconv._modulate_ref(weight.double(), styles.double(), demodulate, fused)
            if fused:
                _assert_emulated(w, want_w, dtype, f'w {o}x{i}x{k} demodulate={demodulate}')
            if demodulate:
                _assert_emulated(d, want_d, dtype, f'dcoefs {o}x{i}x{k}')


@pytest.mark.build
@pytest.mark.parametrize('dtype', list(DTYPE_CODE))
def test_filtered_lrelu_kernel_emulated(emulator, dtype):
    """Forward (activation, recorded derivative classes) and the gradient pass, several tilings, against the Python model of the kernel."""
    from tests.test_filtered_lrelu import EMU_CASES, kernel_model, kernel_args
    for case in EMU_CASES if dtype in (torch.float32, torch.float64) else EMU_CASES[:2]:
        args = kernel_args(case, dtype)
        x, b, f1, f2 = args['x'], args['b'], args['f1'], args['f2']
        sizes, geom, filt = args['sizes'], args['geom'], args['filt']
        n, c = x.shape[:2]
        want_y, want_cls = kernel_model(x.double(), f1.double(), f2.double(), None if b is None else b.double(), None, args['g'], 0,
                                        case['gain'], case['slope'], case['clamp'])
        for tile in ((0, 0), (3, 2), (1, 5)):
            y = torch.empty(n, c, sizes[4], sizes[5], dtype=dtype)
            cls = torch.full([n, c, sizes[2], sizes[3]], 7, dtype=torch.uint8)
            tile_arr = (ctypes.c_int * 2)(*tile)
            clamp = -1.0 if case['clamp'] is None else case['clamp']
            assert emulator.emu_filtered_lrelu(_ptr(x), _ptr(b), _ptr(f1), _ptr(f2), _ptr(y), None, _ptr(cls), n, c,
                                               (ctypes.c_int64 * 4)(*x.stride()), (ctypes.c_int * 6)(*sizes), (ctypes.c_int * 6)(*geom),
                                               (ctypes.c_int * 6)(*filt), 0, case['gain'], case['slope'], clamp, DTYPE_CODE[dtype], tile_arr) == 0
            _assert_emulated(y, want_y, dtype, f'{case} forward tile {tuple(tile_arr)}')
            # Classes: exact wherever the pre-activation is not within rounding of 0 or of the clamp.
            covered = cls != 7
            assert covered.any()
            if dtype == torch.float64:
                assert torch.equal(cls[covered], want_cls[covered]), f'{case}: derivative classes differ'
            # Gradient pass: the recorded classes in the middle, adjoint geometry.
            dy = torch.randn(n, c, sizes[4], sizes[5], dtype=torch.float64).to(dtype)
            cls = want_cls.clone()
            adj = kernel_args(case, dtype, adjoint=True)
            gx = torch.empty(n, c, *x.shape[2:], dtype=dtype)
            want_gx, _ = kernel_model(dy.double(), adj['f1'].double(), adj['f2'].double(), None, cls, adj['g'], 1,
                                      case['gain'], case['slope'], None)
            assert emulator.emu_filtered_lrelu(_ptr(dy), None, _ptr(adj['f1']), _ptr(adj['f2']), _ptr(gx), _ptr(cls), None, n, c,
                                               (ctypes.c_int64 * 4)(*dy.stride()), (ctypes.c_int * 6)(*adj['sizes']),
                                               (ctypes.c_int * 6)(*adj['geom']), (ctypes.c_int * 6)(*adj['filt']), 1, case['gain'],
                                               case['slope'], -1.0, DTYPE_CODE[dtype], (ctypes.c_int * 2)(*tile)) == 0
            _assert_emulated(gx, want_gx, dtype, f'{case} gradient tile {tile}')


@pytest.mark.build
def test_filtered_lrelu_tiles_fit_stylegan3_layers(emulator):
    """Every StyleGAN3-T/R layer at 256 and 1024 px gets a shared-memory tile of at least 8x8 outputs, forward and backward."""
    import bench_ops
    from ops import _cuda_filtered_lrelu as cfl
    for res in (256, 1024):
        for cfg in ('T', 'R'):
            for layer in bench_ops.sg3_layers(res, cfg):
                fu = torch.ones(layer['up_taps'])
                fd = torch.ones([layer['down_taps']] * (2 if layer['radial'] else 1))
                pads = layer['padding']
                for dtype in (torch.float16, torch.float64):
                    f1, f2, g = cfl.setup(layer['size'], layer['size'], fu, fd, layer['up'], layer['down'], *pads, False, dtype, 'cpu')
                    for adjoint in (False, True):
                        if adjoint:
                            g = cfl.adjoint_geometry(g, cfl._size(f1), cfl._size(f2))
                            f1, f2 = cfl._reverse(f2), cfl._reverse(f1)
                        up, p1x, p1y, down, p2x, p2y, m_h, m_w, out_h, out_w, in_h, in_w = g
                        tile = (ctypes.c_int * 2)(0, 0)
                        k1, k2 = cfl._size(f1), cfl._size(f2)
                        assert emulator.emu_filtered_lrelu(None, None, None, None, None, None, None, 1, 1, (ctypes.c_int64 * 4)(0, 0, 0, 0),
                                                           (ctypes.c_int * 6)(in_h, in_w, m_h, m_w, out_h, out_w),
                                                           (ctypes.c_int * 6)(up, p1x, p1y, down, p2x, p2y),
                                                           (ctypes.c_int * 6)(k1[1], k1[0], int(f1.ndim == 1), k2[1], k2[0], int(f2.ndim == 1)),
                                                           0, 1.0, 0.2, -1.0, DTYPE_CODE[dtype], tile) == 0
                        minimum = 8 if dtype != torch.float64 else 4
                        assert min(tile[0], tile[1]) >= minimum, f'{cfg}{res} {layer["name"]} {dtype} adjoint={adjoint}: tile {tuple(tile)}'
