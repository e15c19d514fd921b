// Host side of the fused filtered leaky ReLU: argument checks, output allocation, tile choice and
// launch on the current stream. Registered as torch.ops.<GANFORGE_OP_NS>.filtered_lrelu.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "filtered_lrelu.h"

#ifndef GANFORGE_OP_NS
#error "GANFORGE_OP_NS must name the operator namespace (set by ops/_build.py or setup_ext.py)"
#endif

namespace {

void check_filter(const at::Tensor& f, const at::Tensor& x, const at::ScalarType acc, const char* name) {
    TORCH_CHECK(f.device() == x.device(), "filtered_lrelu: ", name, " must be on ", x.device(), " like x, got ", f.device());
    TORCH_CHECK(f.scalar_type() == acc, "filtered_lrelu: ", name, " must be ", acc, " for x of dtype ", x.scalar_type(), ", got ", f.scalar_type());
    TORCH_CHECK((f.dim() == 1 || f.dim() == 2) && f.numel() > 0 && f.is_contiguous(),
                "filtered_lrelu: ", name, " must be a non-empty contiguous [taps] or [fh, fw] tensor, got shape ", f.sizes());
}

// Returns (y, classes): classes is the [N, C, m_h, m_w] uint8 derivative record when write_classes, else empty.
std::tuple<at::Tensor, at::Tensor> filtered_lrelu(
        const at::Tensor& x, const at::Tensor& f1, const at::Tensor& f2, const std::optional<at::Tensor>& b_opt,
        const std::optional<at::Tensor>& si_opt, int64_t up, int64_t pad1_x, int64_t pad1_y, int64_t m_h, int64_t m_w,
        int64_t down, int64_t pad2_x, int64_t pad2_y, int64_t out_h, int64_t out_w, int64_t mode, double gain, double slope, double clamp, bool write_classes) {
    TORCH_CHECK(x.is_cuda(), "filtered_lrelu: x must be a CUDA tensor, got device ", x.device());
    TORCH_CHECK(x.dim() == 4, "filtered_lrelu: x must have shape [N, C, H, W], got ", x.sizes());
    int dtype = -1;
    switch (x.scalar_type()) {
    case at::kFloat: dtype = 0; break;
    case at::kHalf: dtype = 1; break;
    case at::kBFloat16: dtype = 2; break;
    case at::kDouble: dtype = 3; break;
    default: TORCH_CHECK(false, "filtered_lrelu: x must be float32, float16, bfloat16 or float64, got ", x.scalar_type());
    }
    TORCH_CHECK(up >= 1 && down >= 1, "filtered_lrelu: up and down must be >= 1, got ", up, " and ", down);
    TORCH_CHECK(mode == 0 || mode == 1, "filtered_lrelu: mode must be 0 (activation) or 1 (recorded derivative), got ", mode);
    TORCH_CHECK(out_h >= 1 && out_w >= 1, "filtered_lrelu: output size must be positive, got ", out_h, "x", out_w);
    TORCH_CHECK(m_h >= 1 && m_w >= 1 && m_h < (int64_t(1) << 28) && m_w < (int64_t(1) << 28),
                "filtered_lrelu: intermediate size must be in [1, 2^28), got ", m_h, "x", m_w);
    TORCH_CHECK(x.size(2) < (int64_t(1) << 28) && x.size(3) < (int64_t(1) << 28), "filtered_lrelu: x height and width must be < 2^28, got ", x.sizes());
    c10::cuda::CUDAGuard guard(x.device());
    const at::ScalarType acc = (x.scalar_type() == at::kDouble) ? at::kDouble : at::kFloat;
    check_filter(f1, x, acc, "f1");
    check_filter(f2, x, acc, "f2");

    at::Tensor b, si;
    if (b_opt.has_value() && b_opt->defined()) {
        b = b_opt->contiguous();
        TORCH_CHECK(mode == 0, "filtered_lrelu: b is only used in mode 0");
        TORCH_CHECK(b.device() == x.device() && b.scalar_type() == x.scalar_type() && b.dim() == 1 && b.size(0) == x.size(1),
                    "filtered_lrelu: b must be a [", x.size(1), "] tensor of x's dtype and device, got ", b.sizes(), " ", b.scalar_type());
    }
    if (mode == 1) {
        TORCH_CHECK(si_opt.has_value() && si_opt->defined(), "filtered_lrelu: mode 1 needs the derivative classes si");
        si = si_opt->contiguous();
        TORCH_CHECK(si.device() == x.device() && si.scalar_type() == at::kByte &&
                    si.sizes() == at::IntArrayRef({x.size(0), x.size(1), m_h, m_w}),
                    "filtered_lrelu: si must be a uint8 [", x.size(0), ", ", x.size(1), ", ", m_h, ", ", m_w, "] tensor on x's device, got ",
                    si.sizes(), " ", si.scalar_type());
    }
    TORCH_CHECK(!(write_classes && mode != 0), "filtered_lrelu: write_classes needs mode 0");

    FilteredLreluParams p;
    p.f1_w = static_cast<int>(f1.size(-1));
    p.f1_h = f1.dim() == 2 ? static_cast<int>(f1.size(0)) : p.f1_w;
    p.f2_w = static_cast<int>(f2.size(-1));
    p.f2_h = f2.dim() == 2 ? static_cast<int>(f2.size(0)) : p.f2_w;

    at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options());
    at::Tensor so = write_classes ? at::zeros({x.size(0), x.size(1), m_h, m_w}, x.options().dtype(at::kByte))
                                  : at::empty({0}, x.options().dtype(at::kByte));
    if (y.numel() == 0) return {y, so};
    p.x = x.data_ptr();
    p.b = b.defined() ? b.data_ptr() : nullptr;
    p.f1 = f1.data_ptr();
    p.f2 = f2.data_ptr();
    p.y = y.data_ptr();
    p.si = si.defined() ? si.data_ptr<uint8_t>() : nullptr;
    p.so = write_classes ? so.data_ptr<uint8_t>() : nullptr;
    p.n = x.size(0);
    p.c = x.size(1);
    for (int i = 0; i < 4; i++) p.sx[i] = x.stride(i);
    p.in_h = static_cast<int>(x.size(2));
    p.in_w = static_cast<int>(x.size(3));
    p.m_h = static_cast<int>(m_h);
    p.m_w = static_cast<int>(m_w);
    p.out_h = static_cast<int>(out_h);
    p.out_w = static_cast<int>(out_w);
    p.up = static_cast<int>(up);
    p.down = static_cast<int>(down);
    p.pad1_x = static_cast<int>(pad1_x);
    p.pad1_y = static_cast<int>(pad1_y);
    p.pad2_x = static_cast<int>(pad2_x);
    p.pad2_y = static_cast<int>(pad2_y);
    p.f1_sep = f1.dim() == 1;
    p.f2_sep = f2.dim() == 1;
    p.mode = static_cast<int>(mode);
    p.gain = gain;
    p.slope = slope;
    p.clamp = clamp;
    p.dtype = dtype;
    filtered_lrelu_tile(p);
    TORCH_CHECK(p.tile_h > 0, "filtered_lrelu: filters of ", p.f1_h, "x", p.f1_w, " and ", p.f2_h, "x", p.f2_w,
                " taps with up=", up, ", down=", down, " do not fit the kernel's shared memory; use impl='ref'");
    TORCH_CHECK((out_h + p.tile_h - 1) / p.tile_h <= 65535, "filtered_lrelu: output height ", out_h, " needs too many tiles");
    C10_CUDA_CHECK(filtered_lrelu_launch(p, c10::cuda::getCurrentCUDAStream(x.device().index()).stream()));
    return {y, so};
}

}  // namespace

TORCH_LIBRARY(GANFORGE_OP_NS, m) {
    m.def("filtered_lrelu(Tensor x, Tensor f1, Tensor f2, Tensor? b, Tensor? si, int up, int pad1_x, int pad1_y, int m_h, int m_w, "
          "int down, int pad2_x, int pad2_y, int out_h, int out_w, int mode, float gain, float slope, float clamp, bool write_classes) "
          "-> (Tensor, Tensor)",
          &filtered_lrelu);
}
