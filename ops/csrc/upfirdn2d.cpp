// Host side of upfirdn2d: argument checks, output allocation (same memory format as x), launch on
// the current stream. Registered as torch.ops.<GANFORGE_OP_NS>.upfirdn2d.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "upfirdn2d.h"

#ifndef GANFORGE_OP_NS
#error "GANFORGE_OP_NS must name the operator namespace (set by ops/_build.py or setup_ext.py)"
#endif

namespace {

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f_in, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                     int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip_filter, double gain) {
    TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor, got device ", x.device());
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must have shape [N, C, H, W], got ", x.sizes());
    int dtype = -1;
    switch (x.scalar_type()) {
    case at::kFloat: dtype = 0; break;
    case at::kHalf: dtype = 1; break;
    case at::kBFloat16: dtype = 2; break;
    case at::kDouble: dtype = 3; break;
    default: TORCH_CHECK(false, "upfirdn2d: x must be float32, float16, bfloat16 or float64, got ", x.scalar_type());
    }
    TORCH_CHECK(f_in.device() == x.device(), "upfirdn2d: f must be on ", x.device(), " like x, got ", f_in.device());
    TORCH_CHECK(f_in.scalar_type() == at::kFloat || f_in.scalar_type() == at::kDouble, "upfirdn2d: f must be float32, got ", f_in.scalar_type());
    TORCH_CHECK(f_in.dim() == 1 || f_in.dim() == 2, "upfirdn2d: f must have shape [taps] (separable) or [fh, fw], got ", f_in.sizes());
    TORCH_CHECK(f_in.numel() > 0, "upfirdn2d: f must not be empty, got shape ", f_in.sizes());
    TORCH_CHECK(upx >= 1 && upy >= 1, "upfirdn2d: up must be >= 1, got (", upx, ", ", upy, ")");
    TORCH_CHECK(downx >= 1 && downy >= 1, "upfirdn2d: down must be >= 1, got (", downx, ", ", downy, ")");
    TORCH_CHECK(x.size(2) < (int64_t(1) << 28) && x.size(3) < (int64_t(1) << 28), "upfirdn2d: x height and width must be < 2^28, got ", x.sizes());
    c10::cuda::CUDAGuard guard(x.device());

    const at::ScalarType acc = (x.scalar_type() == at::kDouble) ? at::kDouble : at::kFloat;
    const at::Tensor f = f_in.to(acc).contiguous();
    const int64_t fw = f.size(-1), fh = (f.dim() == 2) ? f.size(0) : fw;
    const int64_t in_h = x.size(2), in_w = x.size(3);
    const int64_t out_h = (in_h * upy + pady0 + pady1 - fh) / downy + 1;
    const int64_t out_w = (in_w * upx + padx0 + padx1 - fw) / downx + 1;
    TORCH_CHECK(in_h * upy + pady0 + pady1 >= fh && in_w * upx + padx0 + padx1 >= fw && out_h >= 1 && out_w >= 1,
                "upfirdn2d: padded input of size ", in_h * upy + pady0 + pady1, "x", in_w * upx + padx0 + padx1,
                " is smaller than the filter (", fh, "x", fw, "); x has shape ", x.sizes());

    const bool nhwc = !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options(),
                             nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
    if (y.numel() == 0) return y;

    Upfirdn2dParams p;
    p.x = x.data_ptr();
    p.f = f.data_ptr();
    p.y = y.data_ptr();
    p.n = x.size(0);
    p.c = x.size(1);
    p.in_h = static_cast<int>(in_h);
    p.in_w = static_cast<int>(in_w);
    p.out_h = static_cast<int>(out_h);
    p.out_w = static_cast<int>(out_w);
    for (int i = 0; i < 4; i++) p.sx[i] = x.stride(i);
    p.up_x = static_cast<int>(upx);
    p.up_y = static_cast<int>(upy);
    p.down_x = static_cast<int>(downx);
    p.down_y = static_cast<int>(downy);
    p.pad_x0 = static_cast<int>(padx0);
    p.pad_y0 = static_cast<int>(pady0);
    p.f_w = static_cast<int>(fw);
    p.f_h = static_cast<int>(fh);
    p.f_sep = f.dim() == 1;
    p.f_flip = !flip_filter;
    p.gain = gain;
    p.y_nhwc = nhwc;
    p.dtype = dtype;
    C10_CUDA_CHECK(upfirdn2d_launch(p, c10::cuda::getCurrentCUDAStream(x.device().index()).stream()));
    return y;
}

}  // namespace

TORCH_LIBRARY(GANFORGE_OP_NS, m) {
    m.def("upfirdn2d(Tensor x, Tensor f, int upx, int upy, int downx, int downy, int padx0, int padx1, int pady0, int pady1, "
          "bool flip_filter, float gain) -> Tensor",
          &upfirdn2d);
}
