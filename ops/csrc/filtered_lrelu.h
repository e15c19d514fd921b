// Filtered leaky ReLU, fused: upfirdn -> activation -> upfirdn in one pass over shared-memory tiles.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

// One pass computes, per (n, c) plane and along each axis (2-D filters act on both at once):
//   stage 1:  m[j] = sum_t f1[t] * u[j + t - pad1]      u = x (+ bias) upsampled by zero insertion:
//                                                       u[k] = x[k / up] if k % up == 0 and 0 <= k / up < in, else 0
//   middle:   mode 0: v = clamp(gain * lrelu(m, slope), -clamp, clamp)   (clamp < 0: none); optionally
//                     records per m pixel the derivative class (0: m > 0, 1: m <= 0, 2: clamped) in `so`
//             mode 1: v = m * d, d = gain, gain * slope or 0 for class 0, 1 or 2 read from `si`
//   stage 2:  y[o] = sum_t f2[t] * v[o * down + t - pad2]   (v = 0 outside [0, m_size))
// The filters are taps as applied (correlation, gains folded in), so the same pass with other
// arguments computes the gradient (mode 1, backward geometry) and its adjoint (mode 1, forward).
struct FilteredLreluParams {
    const void* x;        // [n, c, in_h, in_w] with strides sx (elements, any layout)
    const void* b;        // bias [c] (mode 0) or nullptr
    const void* f1;       // stage-1 taps: [f1_h, f1_w] or [f1_w] (separable, f1_h = f1_w); float32, float64 for float64 x
    const void* f2;       // stage-2 taps, same forms
    void* y;              // [n, c, out_h, out_w] contiguous
    const uint8_t* si;    // [n, c, m_h, m_w] derivative classes (mode 1)
    uint8_t* so;          // [n, c, m_h, m_w] derivative classes written by mode 0, or nullptr
    int64_t n, c;         // batch size, channels
    int64_t sx[4];        // strides of x for n, c, h, w
    int in_h, in_w;       // input size
    int m_h, m_w;         // size of the intermediate (the filtered, upsampled image)
    int out_h, out_w;     // output size
    int up, down;         // stage-1 upsampling and stage-2 downsampling factors (both axes)
    int pad1_x, pad1_y;   // stage-1 leading padding of the upsampled image (negative crops)
    int pad2_x, pad2_y;   // stage-2 leading padding of the intermediate
    int f1_w, f1_h, f2_w, f2_h;
    bool f1_sep, f2_sep;  // the filter is 1-D and used on both axes
    int mode;             // 0 or 1, see above
    double gain, slope, clamp;
    int tile_h, tile_w;   // output tile of one block (chosen by filtered_lrelu_tile so that it fits in shared memory)
    int dtype;            // ganforge::DType of x, b and y
};

// Largest output tile (tile_h, tile_w) whose working set fits the kernel's shared memory, or (0, 0).
void filtered_lrelu_tile(FilteredLreluParams& p);
cudaError_t filtered_lrelu_launch(const FilteredLreluParams& p, cudaStream_t stream);
