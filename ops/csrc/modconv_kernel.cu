// Weight modulation/demodulation kernel: one block per (sample, output channel) reduces the
// squared modulated weights for the demodulation coefficient, then writes the modulated row.
#include "modconv.h"
#include "common.cuh"

using namespace ganforge;

namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) modulate_kernel(ModulateParams p) {
    using A = typename Acc<T>::type;
    __shared__ A partial[kThreads / 32];
    __shared__ A coef;
    const T* weight = static_cast<const T*>(p.weight);
    const T* styles = static_cast<const T*>(p.styles);
    const int64_t o = blockIdx.x, n = blockIdx.y;
    const int64_t row = p.i * p.k;  // elements of one output channel
    const T* wr = weight + o * row;
    const T* sr = styles + n * p.i;

    // Demodulation coefficient: block-wide sum of squares.
    A d = A(1);
    if (p.dcoefs) {
        A sum = 0;
        for (int64_t j = threadIdx.x; j < row; j += kThreads) {
            const A v = to_acc(wr[j]) * to_acc(sr[j / p.k]);
            sum += v * v;
        }
        for (int off = 16; off > 0; off >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, off);
        if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = sum;
        __syncthreads();
        if (threadIdx.x == 0) {
            A total = 0;
            for (int j = 0; j < kThreads / 32; j++) total += partial[j];
            coef = A(1) / sqrt(total + A(1e-8));
            static_cast<T*>(p.dcoefs)[n * p.o + o] = from_acc<T>(coef);
        }
        __syncthreads();
        d = coef;
    }

    // Modulated (and demodulated) weights.
    if (p.w) {
        T* out = static_cast<T*>(p.w) + (n * p.o + o) * row;
        for (int64_t j = threadIdx.x; j < row; j += kThreads)
            out[j] = from_acc<T>(to_acc(wr[j]) * to_acc(sr[j / p.k]) * d);
    }
}

template <typename T>
cudaError_t launch_typed(const ModulateParams& p, cudaStream_t stream) {
    modulate_kernel<T><<<dim3(static_cast<unsigned int>(p.o), static_cast<unsigned int>(p.n)), kThreads, 0, stream>>>(p);
    return cudaGetLastError();
}

}  // namespace

cudaError_t modulate_launch(const ModulateParams& p, cudaStream_t stream) {
    switch (p.dtype) {
    case kFloat32:  return launch_typed<float>(p, stream);
    case kFloat16:  return launch_typed<__half>(p, stream);
    case kBFloat16: return launch_typed<__nv_bfloat16>(p, stream);
    case kFloat64:  return launch_typed<double>(p, stream);
    default:        return cudaErrorInvalidValue;
    }
}
