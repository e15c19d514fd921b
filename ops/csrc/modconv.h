// Per-sample weight modulation and demodulation for StyleGAN2 modulated convolution:
// host/device interface.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

// With v[n, o, i, k] = weight[o, i, k] * styles[n, i] (k runs over kh * kw):
//   dcoefs[n, o] = rsqrt(sum_{i, k} v[n, o, i, k]^2 + 1e-8)        (if demodulate)
//   w[n, o, i, k] = v[n, o, i, k] * (demodulate ? dcoefs[n, o] : 1)  (if w != nullptr)
struct ModulateParams {
    const void* weight;  // [O, I, K] contiguous
    const void* styles;  // [N, I] contiguous
    void* w;             // [N, O, I, K] contiguous, or nullptr (non-fused path)
    void* dcoefs;        // [N, O] contiguous, or nullptr (no demodulation)
    int64_t n, o, i, k;  // batch, output channels, input channels, kernel taps (kh * kw)
    int dtype;           // ganforge::DType of every tensor
};

cudaError_t modulate_launch(const ModulateParams& p, cudaStream_t stream);
