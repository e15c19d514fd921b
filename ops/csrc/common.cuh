// Device helpers shared by the ganforge kernels: element types, accumulation types and
// 128-bit vector access. Included only by .cu files (no PyTorch headers here).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace ganforge {

// Element type codes passed from the host side (see each op's .h).
enum DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

// Arithmetic happens in float for the 16-bit types and for float, in double for double.
template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_acc(float v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <typename T> __device__ __forceinline__ T from_acc(double v);
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }

// V elements of T packed in one 16-byte word, for 128-bit loads and stores.
template <typename T> struct Vec16 {
    static constexpr int V = 16 / sizeof(T);
    union { uint4 raw; T v[V]; };
};

template <typename T> __device__ __forceinline__ void load16(Vec16<T>& dst, const T* src) {
    dst.raw = *reinterpret_cast<const uint4*>(src);
}
template <typename T> __device__ __forceinline__ void store16(T* dst, const Vec16<T>& src) {
    *reinterpret_cast<uint4*>(dst) = src.raw;
}

// Floor division and non-negative remainder for possibly negative numerators.
__device__ __forceinline__ int floor_div(int a, int b) { return (a >= 0) ? a / b : -((-a + b - 1) / b); }
__device__ __forceinline__ int pos_mod(int a, int b) { int r = a % b; return (r < 0) ? r + b : r; }

// Blocks for a grid-stride loop over `work` items with `threads` per block.
inline unsigned int grid_blocks(int64_t work, int threads, int64_t cap = 65535) {
    int64_t blocks = (work + threads - 1) / threads;
    if (blocks < 1) blocks = 1;
    return static_cast<unsigned int>(blocks < cap ? blocks : cap);
}

}  // namespace ganforge
