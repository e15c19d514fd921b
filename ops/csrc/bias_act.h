// Fused bias + activation + gain + clamp (and its first and second derivatives): host/device interface.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

// Activations, numbered as NVlabs `cuda_idx`.
enum BiasActKind : int {
    kLinear = 1, kRelu = 2, kLrelu = 3, kTanh = 4, kSigmoid = 5, kElu = 6, kSelu = 7, kSoftplus = 8, kSwish = 9
};

// What the kernel writes. The derivatives read a reference tensor r: the input x (s = x + b) or,
// for activations whose derivatives follow from their output (NVlabs' "y" reference), the forward
// output y (f = y / gain), so that the input need not be kept for the backward pass.
// m = (clamp < 0 || |gain * act(s)| <= clamp) with x, (clamp < 0 || |y| < clamp_t) with y, where clamp_t
// is clamp rounded to the element type (the value a clamped output holds).
//   mode 0: out = clamp(gain * act(s), -clamp, clamp)                     (forward; r = x)
//   mode 1: out = dy * gain * act'(s) * m                                 (first derivative)
//   mode 2: out = gg * dy * gain * act''(s) * m          with r = x       (second derivative: d out1 / dx)
//           out = gg * dy * (d act' / d act)(f) * m      with r = y       (d out1 / dy)
struct BiasActParams {
    const void* r;     // [numel] reference: x (mode 0, or ref_y false) or y; dense (no overlap, no gaps) in any memory order
    const void* b;     // [size_b] bias along the channel dim, or nullptr (only read with r = x)
    const void* dy;    // [numel] incoming gradient (modes 1, 2), same strides as r
    const void* gg;    // [numel] gradient of the first derivative (mode 2), same strides as r
    void* out;         // [numel] result, same strides as r
    int64_t numel;     // number of elements of r
    int64_t size_b;    // channels: element at memory offset i has channel (i / step_b) % size_b
    int64_t step_b;    // memory stride of the channel dim of r
    int dtype;         // ganforge::DType of r, b, dy, gg and out
    int mode;          // 0, 1 or 2 (see above)
    int act;           // BiasActKind
    bool ref_y;        // r is the forward output y (modes 1, 2)
    double alpha;      // lrelu slope (ignored by the others)
    double gain;       // scale applied after the activation
    double clamp;      // clamp limit, negative for none
    bool vec;          // all pointers 16-byte aligned: 128-bit loads allowed
};

// Launches the kernel on `stream`; returns the launch status.
cudaError_t bias_act_launch(const BiasActParams& p, cudaStream_t stream);
