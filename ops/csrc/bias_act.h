// Fused bias + activation + gain + clamp (and its first and second derivatives): host/device interface.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

// Activations, numbered as NVlabs `cuda_idx`.
enum BiasActKind : int {
    kLinear = 1, kRelu = 2, kLrelu = 3, kTanh = 4, kSigmoid = 5, kElu = 6, kSelu = 7, kSoftplus = 8, kSwish = 9
};

// What the kernel writes, with s = x + b and m = (clamp < 0 || |gain * act(s)| <= clamp):
//   mode 0: out = clamp(gain * act(s), -clamp, clamp)   (forward)
//   mode 1: out = dy * gain * act'(s) * m               (first derivative)
//   mode 2: out = gg * dy * gain * act''(s) * m         (second derivative)
struct BiasActParams {
    const void* x;     // [numel] input, dense (no overlap, no gaps) in any memory order
    const void* b;     // [size_b] bias along the channel dim, or nullptr
    const void* dy;    // [numel] incoming gradient (modes 1, 2), same strides as x
    const void* gg;    // [numel] gradient of the first derivative (mode 2), same strides as x
    void* out;         // [numel] result, same strides as x
    int64_t numel;     // number of elements of x
    int64_t size_b;    // channels: element at memory offset i has channel (i / step_b) % size_b
    int64_t step_b;    // memory stride of the channel dim of x
    int dtype;         // ganforge::DType of x, b, dy, gg and out
    int mode;          // 0, 1 or 2 (see above)
    int act;           // BiasActKind
    double alpha;      // lrelu slope (ignored by the others)
    double gain;       // scale applied after the activation
    double clamp;      // clamp limit, negative for none
    bool vec;          // all pointers 16-byte aligned: 128-bit loads allowed
};

// Launches the kernel on `stream`; returns the launch status.
cudaError_t bias_act_launch(const BiasActParams& p, cudaStream_t stream);
