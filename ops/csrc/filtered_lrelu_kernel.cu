// Fused filtered leaky ReLU: one block computes a tile_h x tile_w output tile of one (n, c)
// plane. Everything between the input and the output stays in shared memory:
//   X  [TIH][TIW]  the input tile (+ bias), in the accumulation type
//   T1 [TIH][TMW]  stage 1 along x (separable filters only), at input-row resolution
//   M  [TMH][TMW]  the intermediate (stage 1 done), then the activation applied in place
//   T2 [TMH][TOW]  stage 2 along x (separable filters only)
// and the output tile goes from registers to global memory. Only the stage-1 taps that land on
// an input sample (every up-th one) are visited, and stage 2 computes only the kept pixels.
#include "filtered_lrelu.h"
#include "common.cuh"

using namespace ganforge;

namespace {

constexpr int kThreads = 256;
constexpr int kSharedBytes = 48 * 1024;

// Rows/cols of each buffer for an output tile of th x tw.
struct TileDims {
    int toh, tow, tmh, tmw, tih, tiw;
};

__host__ __device__ inline TileDims tile_dims(const FilteredLreluParams& p, int th, int tw) {
    TileDims d;
    d.toh = th;
    d.tow = tw;
    d.tmh = (th - 1) * p.down + p.f2_h;
    d.tmw = (tw - 1) * p.down + p.f2_w;
    d.tih = (d.tmh + p.f1_h - 1 + p.up - 1) / p.up;  // most input samples a window of that many u pixels holds
    d.tiw = (d.tmw + p.f1_w - 1 + p.up - 1) / p.up;
    return d;
}

__host__ __device__ inline int64_t tile_elems(const FilteredLreluParams& p, const TileDims& d) {
    int64_t e = int64_t(d.tih) * d.tiw + int64_t(d.tmh) * d.tmw;
    if (p.f1_sep) e += int64_t(d.tih) * d.tmw;
    if (p.f2_sep) e += int64_t(d.tmh) * d.tow;
    return e;
}

__device__ __forceinline__ int ceil_div(int a, int b) { return -floor_div(-a, b); }

template <typename T>
__global__ void __launch_bounds__(kThreads) filtered_lrelu_kernel(FilteredLreluParams p) {
    using A = typename Acc<T>::type;
    __shared__ A smem[kSharedBytes / sizeof(A)];
    const T* x = static_cast<const T*>(p.x);
    const T* bias = static_cast<const T*>(p.b);
    const A* f1 = static_cast<const A*>(p.f1);
    const A* f2 = static_cast<const A*>(p.f2);
    T* y = static_cast<T*>(p.y);
    const TileDims d = tile_dims(p, p.tile_h, p.tile_w);
    A* sX = smem;
    A* sT1 = sX + d.tih * d.tiw;
    A* sM = sT1 + (p.f1_sep ? d.tih * d.tmw : 0);
    A* sT2 = sM + d.tmh * d.tmw;
    const int tid = threadIdx.x;
    const int nthr = blockDim.x;

    // Tile origin in each coordinate system.
    const int oy0 = blockIdx.y * d.toh, ox0 = blockIdx.x * d.tow;
    const int my0 = oy0 * p.down - p.pad2_y, mx0 = ox0 * p.down - p.pad2_x;  // first intermediate pixel
    const int iy0 = ceil_div(my0 - p.pad1_y, p.up), ix0 = ceil_div(mx0 - p.pad1_x, p.up);  // first input sample
    const A gain = A(p.gain), slope = A(p.slope), clamp = A(p.clamp);
    const int64_t planes = p.n * p.c;

    for (int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const int64_t n = plane / p.c, c = plane - n * p.c;
        const T* xp = x + n * p.sx[0] + c * p.sx[1];
        const A bv = bias ? to_acc(bias[c]) : A(0);
        __syncthreads();  // the previous plane is done with the buffers
        for (int i = tid; i < d.tih * d.tiw; i += nthr) {
            const int r = i / d.tiw, q = i - r * d.tiw, iy = iy0 + r, ix = ix0 + q;
            A v = 0;
            if (iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w) v = to_acc(xp[iy * p.sx[2] + ix * p.sx[3]]) + bv;
            sX[i] = v;
        }
        __syncthreads();

        // Stage 1 (up, f1) into M. u pixel k holds input sample k / up - ix0 (local) when k % up == 0.
        if (p.f1_sep) {
            for (int i = tid; i < d.tih * d.tmw; i += nthr) {  // along x, at input-row resolution
                const int r = i / d.tmw, q = i - r * d.tmw;
                const int k = mx0 + q - p.pad1_x;  // u column under tap 0
                int t = pos_mod(-k, p.up);
                A acc = 0;
                for (int s = (k + t) / p.up - ix0; t < p.f1_w; t += p.up, s++) acc += f1[t] * sX[r * d.tiw + s];
                sT1[i] = acc;
            }
            __syncthreads();
            for (int i = tid; i < d.tmh * d.tmw; i += nthr) {  // along y
                const int r = i / d.tmw, q = i - r * d.tmw;
                const int k = my0 + r - p.pad1_y;
                int t = pos_mod(-k, p.up);
                A acc = 0;
                for (int s = (k + t) / p.up - iy0; t < p.f1_h; t += p.up, s++) acc += f1[t] * sT1[s * d.tmw + q];
                sM[i] = acc;
            }
        } else {
            for (int i = tid; i < d.tmh * d.tmw; i += nthr) {
                const int r = i / d.tmw, q = i - r * d.tmw;
                const int ky = my0 + r - p.pad1_y, kx = mx0 + q - p.pad1_x;
                const int ty0 = pos_mod(-ky, p.up), tx0 = pos_mod(-kx, p.up);
                const int sy0 = (ky + ty0) / p.up - iy0, sx0 = (kx + tx0) / p.up - ix0;
                A acc = 0;
                for (int ty = ty0, sy = sy0; ty < p.f1_h; ty += p.up, sy++)
                    for (int tx = tx0, sxx = sx0; tx < p.f1_w; tx += p.up, sxx++) acc += f1[ty * p.f1_w + tx] * sX[sy * d.tiw + sxx];
                sM[i] = acc;
            }
        }
        __syncthreads();

        // Middle: activation (mode 0) or derivative (mode 1), in place; zero outside the intermediate.
        const int64_t mplane = plane * p.m_h * p.m_w;
        for (int i = tid; i < d.tmh * d.tmw; i += nthr) {
            const int r = i / d.tmw, q = i - r * d.tmw, my = my0 + r, mx = mx0 + q;
            A v = 0;
            if (my >= 0 && my < p.m_h && mx >= 0 && mx < p.m_w) {
                const int64_t at = mplane + int64_t(my) * p.m_w + mx;
                v = sM[i];
                if (p.mode == 0) {
                    uint8_t cls = v > A(0) ? 0 : 1;
                    v = (v > A(0) ? v : v * slope) * gain;
                    if (clamp >= A(0) && (v > clamp || v < -clamp)) {
                        v = v > A(0) ? clamp : -clamp;
                        cls = 2;
                    }
                    if (p.so) p.so[at] = cls;
                } else {
                    const uint8_t cls = p.si[at];
                    v *= cls == 0 ? gain : cls == 1 ? gain * slope : A(0);
                }
            }
            sM[i] = v;
        }
        __syncthreads();

        // Stage 2 (f2, down) from M to the output.
        T* yp = y + plane * p.out_h * p.out_w;
        if (p.f2_sep) {
            for (int i = tid; i < d.tmh * d.tow; i += nthr) {  // along x, kept columns only
                const int r = i / d.tow, q = i - r * d.tow;
                const A* row = sM + r * d.tmw + q * p.down;
                A acc = 0;
                for (int t = 0; t < p.f2_w; t++) acc += f2[t] * row[t];
                sT2[i] = acc;
            }
            __syncthreads();
        }
        for (int i = tid; i < d.toh * d.tow; i += nthr) {
            const int r = i / d.tow, q = i - r * d.tow, oy = oy0 + r, ox = ox0 + q;
            if (oy >= p.out_h || ox >= p.out_w) continue;
            A acc = 0;
            if (p.f2_sep) {
                for (int t = 0; t < p.f2_h; t++) acc += f2[t] * sT2[(r * p.down + t) * d.tow + q];
            } else {
                const A* win = sM + (r * p.down) * d.tmw + q * p.down;
                for (int ty = 0; ty < p.f2_h; ty++)
                    for (int tx = 0; tx < p.f2_w; tx++) acc += f2[ty * p.f2_w + tx] * win[ty * d.tmw + tx];
            }
            yp[int64_t(oy) * p.out_w + ox] = from_acc<T>(acc);
        }
    }
}

template <typename T>
cudaError_t launch_typed(const FilteredLreluParams& p, cudaStream_t stream) {
    const int64_t planes = p.n * p.c;
    dim3 grid((p.out_w + p.tile_w - 1) / p.tile_w, (p.out_h + p.tile_h - 1) / p.tile_h,
              static_cast<unsigned int>(planes < 65535 ? planes : 65535));
    filtered_lrelu_kernel<T><<<grid, kThreads, 0, stream>>>(p);
    return cudaGetLastError();
}

}  // namespace

void filtered_lrelu_tile(FilteredLreluParams& p) {
    static const int candidates[][2] = {{32, 32}, {32, 16}, {16, 32}, {16, 16}, {16, 8}, {8, 16}, {8, 8}, {8, 4}, {4, 4}, {2, 2}, {1, 1}};
    const int64_t elem = p.dtype == kFloat64 ? 8 : 4;
    p.tile_h = p.tile_w = 0;
    for (const auto& c : candidates) {
        const int th = c[0] < p.out_h ? c[0] : (p.out_h < 1 ? 1 : p.out_h);
        const int tw = c[1] < p.out_w ? c[1] : (p.out_w < 1 ? 1 : p.out_w);
        if (tile_elems(p, tile_dims(p, th, tw)) * elem <= kSharedBytes) {
            p.tile_h = th;
            p.tile_w = tw;
            return;
        }
    }
}

cudaError_t filtered_lrelu_launch(const FilteredLreluParams& p, cudaStream_t stream) {
    if (p.tile_h < 1 || p.tile_w < 1 || (p.out_h + p.tile_h - 1) / p.tile_h > 65535) return cudaErrorInvalidValue;
    switch (p.dtype) {
    case kFloat32:  return launch_typed<float>(p, stream);
    case kFloat16:  return launch_typed<__half>(p, stream);
    case kBFloat16: return launch_typed<__nv_bfloat16>(p, stream);
    case kFloat64:  return launch_typed<double>(p, stream);
    default:        return cudaErrorInvalidValue;
    }
}
