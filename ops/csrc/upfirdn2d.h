// Upsample (zero insertion), pad/crop, FIR filter and downsample in one pass: host/device interface.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

// y[n, c, oy, ox] = sum_{ky, kx} xu[n, c, oy * down_y + ky - pad_y0, ox * down_x + kx - pad_x0] * f[ky, kx]
// where xu is x upsampled by zero insertion (xu[u * up] = x[u], zero elsewhere and outside x).
// with f[ky, kx] = gain * g[f_h - 1 - ky, f_w - 1 - kx] (convolution) when f_flip, else gain * g[ky, kx],
// where g is the given filter: 2-D [f_h, f_w], or 1-D [f_w] (f_h = f_w) meaning g[i, j] = g[i] * g[j].
struct Upfirdn2dParams {
    const void* x;       // [n, c, in_h, in_w] with strides sx (elements, any layout)
    const void* f;       // g: [f_h, f_w] or [f_w] (separable), contiguous; float32, or float64 when x is float64
    void* y;             // [n, c, out_h, out_w] contiguous (NCHW) or channels_last (NHWC), see y_nhwc
    int64_t n, c;        // batch size, channels
    int in_h, in_w;      // input size
    int out_h, out_w;    // output size
    int64_t sx[4];       // strides of x for n, c, h, w
    int up_x, up_y;      // upsampling factors
    int down_x, down_y;  // downsampling factors
    int pad_x0, pad_y0;  // leading padding (negative crops); the trailing padding only sets out_w/out_h
    int f_w, f_h;        // filter size
    bool f_sep;          // g is 1-D and used on both axes
    bool f_flip;         // flip g (true convolution); NVlabs flip_filter=False means f_flip=true
    double gain;         // overall scale of the filter
    bool y_nhwc;         // output memory order: n, h, w, c (channels_last) instead of n, c, h, w
    int dtype;           // ganforge::DType of x and y
};

// Picks the tiled shared-memory kernel when one is specialized for the case, else the generic one.
cudaError_t upfirdn2d_launch(const Upfirdn2dParams& p, cudaStream_t stream);
