// upfirdn2d kernels: a tiled shared-memory kernel specialized at compile time for the StyleGAN2
// cases (4x4 filter with up 2, down 2, or neither; NCHW output) and a generic polyphase gather
// kernel for everything else (any filter size and factors, NCHW or NHWC output).
#include "upfirdn2d.h"
#include "common.cuh"

using namespace ganforge;

namespace {

// Filter tap (ky, kx) as applied: flipped for convolution, gain folded in.
template <typename A>
__device__ __forceinline__ A filter_tap(const Upfirdn2dParams& p, const A* g, int ky, int kx) {
    if (p.f_flip) { ky = p.f_h - 1 - ky; kx = p.f_w - 1 - kx; }
    const A v = p.f_sep ? g[ky] * g[kx] : g[ky * p.f_w + kx];
    return v * A(p.gain);
}

// Generic kernel: one thread per output element, walked in the output's memory order so that
// neighbouring threads touch neighbouring addresses (w for NCHW, c for NHWC). Only the filter taps
// that land on an input sample (every up-th one) are visited.
template <typename T, typename I>
__global__ void __launch_bounds__(256) upfirdn2d_generic(Upfirdn2dParams p) {
    using A = typename Acc<T>::type;
    const T* x = static_cast<const T*>(p.x);
    const A* f = static_cast<const A*>(p.f);
    T* y = static_cast<T*>(p.y);
    const I C = static_cast<I>(p.c), H = p.out_h, W = p.out_w;
    const I total = static_cast<I>(p.n) * C * H * W;
    const I stride = static_cast<I>(blockDim.x) * gridDim.x;
    for (I idx = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        I n, c, oy, ox, t = idx;
        if (p.y_nhwc) { c = t % C; t /= C; ox = t % W; t /= W; oy = t % H; n = t / H; }
        else          { ox = t % W; t /= W; oy = t % H; t /= H; c = t % C; n = t / C; }
        const T* xp = x + static_cast<int64_t>(n) * p.sx[0] + static_cast<int64_t>(c) * p.sx[1];  // input may exceed 2^31 elements
        const int uy = static_cast<int>(oy) * p.down_y - p.pad_y0;  // upsampled row under tap 0
        const int ux = static_cast<int>(ox) * p.down_x - p.pad_x0;
        const int ky0 = pos_mod(-uy, p.up_y), kx0 = pos_mod(-ux, p.up_x);
        A acc = 0;
        int iy = (uy + ky0) / p.up_y;  // exact division
        for (int ky = ky0; ky < p.f_h; ky += p.up_y, iy++) {
            if (iy < 0 || iy >= p.in_h) continue;
            const T* row = xp + iy * p.sx[2];
            int ix = (ux + kx0) / p.up_x;
            for (int kx = kx0; kx < p.f_w; kx += p.up_x, ix++) {
                if (ix < 0 || ix >= p.in_w) continue;
                acc += to_acc(row[ix * p.sx[3]]) * filter_tap<A>(p, f, ky, kx);
            }
        }
        y[idx] = from_acc<T>(acc);
    }
}

// Tiled kernel for NCHW output: a block computes a TOH x TOW output tile of one (n, c) plane from
// an input tile (plus halo) staged in shared memory. UP, DOWN and the FT x FT filter are
// compile-time constants so the tap loops unroll.
template <typename T, int UP, int DOWN, int FT>
__global__ void __launch_bounds__(256) upfirdn2d_tiled(Upfirdn2dParams p) {
    using A = typename Acc<T>::type;
    constexpr int TOH = 16, TOW = 64 / DOWN;
    constexpr int TIH = ((TOH - 1) * DOWN + FT - 1) / UP + 2;
    constexpr int TIW = ((TOW - 1) * DOWN + FT - 1) / UP + 2;
    constexpr int TAPS = (FT + UP - 1) / UP;  // taps per axis that can hit an input sample
    __shared__ A sx[TIH][TIW + 1];
    __shared__ A sf[FT][FT];

    const T* x = static_cast<const T*>(p.x);
    const A* f = static_cast<const A*>(p.f);
    T* y = static_cast<T*>(p.y);
    const int tid = threadIdx.x;
    for (int i = tid; i < FT * FT; i += blockDim.x) sf[i / FT][i % FT] = filter_tap<A>(p, f, i / FT, i % FT);

    const int oy0 = blockIdx.y * TOH, ox0 = blockIdx.x * TOW;
    const int iy0 = floor_div(oy0 * DOWN - p.pad_y0, UP);  // first input row/col of the tile
    const int ix0 = floor_div(ox0 * DOWN - p.pad_x0, UP);
    const int64_t planes = p.n * p.c;
    for (int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const int64_t n = plane / p.c, c = plane - n * p.c;
        const T* xp = x + n * p.sx[0] + c * p.sx[1];
        __syncthreads();  // previous plane's readers are done with sx
        for (int i = tid; i < TIH * TIW; i += blockDim.x) {
            const int r = i / TIW, q = i - r * TIW, iy = iy0 + r, ix = ix0 + q;
            A v = 0;
            if (iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w) v = to_acc(xp[iy * p.sx[2] + ix * p.sx[3]]);
            sx[r][q] = v;
        }
        __syncthreads();
        T* yp = y + plane * static_cast<int64_t>(p.out_h) * p.out_w;
        for (int i = tid; i < TOH * TOW; i += blockDim.x) {
            const int ty = i / TOW, tx = i - ty * TOW, oy = oy0 + ty, ox = ox0 + tx;
            if (oy >= p.out_h || ox >= p.out_w) continue;
            const int uy = oy * DOWN - p.pad_y0, ux = ox * DOWN - p.pad_x0;
            const int ky0 = pos_mod(-uy, UP), kx0 = pos_mod(-ux, UP);
            const int ry = (uy + ky0) / UP - iy0, rx = (ux + kx0) / UP - ix0;
            A acc = 0;
#pragma unroll
            for (int ty2 = 0; ty2 < TAPS; ty2++) {
                const int ky = ky0 + ty2 * UP;
                if (ky < FT) {
#pragma unroll
                    for (int tx2 = 0; tx2 < TAPS; tx2++) {
                        const int kx = kx0 + tx2 * UP;
                        if (kx < FT) acc += sx[ry + ty2][rx + tx2] * sf[ky][kx];
                    }
                }
            }
            yp[static_cast<int64_t>(oy) * p.out_w + ox] = from_acc<T>(acc);
        }
    }
}

template <typename T, int UP, int DOWN, int FT>
cudaError_t launch_tiled(const Upfirdn2dParams& p, cudaStream_t stream) {
    constexpr int TOH = 16, TOW = 64 / DOWN;
    const int64_t planes = p.n * p.c;
    dim3 grid((p.out_w + TOW - 1) / TOW, (p.out_h + TOH - 1) / TOH, static_cast<unsigned int>(planes < 65535 ? planes : 65535));
    upfirdn2d_tiled<T, UP, DOWN, FT><<<grid, 256, 0, stream>>>(p);
    return cudaGetLastError();
}

template <typename T>
cudaError_t launch_typed(const Upfirdn2dParams& p, cudaStream_t stream) {
    const bool square = p.up_x == p.up_y && p.down_x == p.down_y && p.f_w == 4 && p.f_h == 4;
    const int64_t tiles_y = (p.out_h + 15) / 16;
    if constexpr (sizeof(T) <= 4) {  // float64 (tests, gradcheck) takes the generic kernel
        if (!p.y_nhwc && square && tiles_y <= 65535) {
            if (p.up_x == 1 && p.down_x == 1) return launch_tiled<T, 1, 1, 4>(p, stream);
            if (p.up_x == 2 && p.down_x == 1) return launch_tiled<T, 2, 1, 4>(p, stream);
            if (p.up_x == 1 && p.down_x == 2) return launch_tiled<T, 1, 2, 4>(p, stream);
        }
    }
    const int64_t total = p.n * p.c * p.out_h * p.out_w;
    const unsigned int blocks = grid_blocks(total, 256, 16384);
    if (total < (int64_t(1) << 30))
        upfirdn2d_generic<T, int32_t><<<blocks, 256, 0, stream>>>(p);
    else
        upfirdn2d_generic<T, int64_t><<<blocks, 256, 0, stream>>>(p);
    return cudaGetLastError();
}

}  // namespace

cudaError_t upfirdn2d_launch(const Upfirdn2dParams& p, cudaStream_t stream) {
    switch (p.dtype) {
    case kFloat32:  return launch_typed<float>(p, stream);
    case kFloat16:  return launch_typed<__half>(p, stream);
    case kBFloat16: return launch_typed<__nv_bfloat16>(p, stream);
    case kFloat64:  return launch_typed<double>(p, stream);
    default:        return cudaErrorInvalidValue;
    }
}
