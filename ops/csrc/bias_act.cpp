// Host side of the fused bias + activation op: argument checks, output allocation, launch on the
// current stream. Registered as torch.ops.<GANFORGE_OP_NS>.bias_act (the namespace carries the
// source hash, so builds of different sources never collide in one process).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "bias_act.h"

#ifndef GANFORGE_OP_NS
#error "GANFORGE_OP_NS must name the operator namespace (set by ops/_build.py or setup_ext.py)"
#endif

namespace {

int dtype_code(const at::Tensor& t, const char* name) {
    switch (t.scalar_type()) {
    case at::kFloat: return 0;
    case at::kHalf: return 1;
    case at::kBFloat16: return 2;
    case at::kDouble: return 3;
    default: TORCH_CHECK(false, "bias_act: ", name, " must be float32, float16, bfloat16 or float64, got ", t.scalar_type());
    }
    return -1;
}

bool aligned16(const at::Tensor& t) {
    return !t.defined() || reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

// A tensor like `x` (same shape, device, dtype) laid out with x's strides.
at::Tensor like_x(const at::Tensor& t, const at::Tensor& x, const char* name) {
    TORCH_CHECK(t.device() == x.device(), "bias_act: ", name, " must be on ", x.device(), " like x, got ", t.device());
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "bias_act: ", name, " must have dtype ", x.scalar_type(), " like x, got ", t.scalar_type());
    TORCH_CHECK(t.sizes() == x.sizes(), "bias_act: ", name, " must have shape ", x.sizes(), " like x, got ", t.sizes());
    if (t.strides() == x.strides()) return t;
    return at::empty_like(x).copy_(t);
}

// x is the input, or the forward output y when ref_y (derivatives from the output, see bias_act.h).
at::Tensor bias_act(const at::Tensor& x_in, const std::optional<at::Tensor>& b_opt, const std::optional<at::Tensor>& dy_opt,
                    const std::optional<at::Tensor>& gg_opt, int64_t dim, int64_t act, int64_t mode, bool ref_y,
                    double alpha, double gain, double clamp) {
    TORCH_CHECK(x_in.is_cuda(), "bias_act: x must be a CUDA tensor, got device ", x_in.device());
    const int dtype = dtype_code(x_in, "x");
    TORCH_CHECK(act >= 1 && act <= 9, "bias_act: act must be an activation index in 1..9, got ", act);
    TORCH_CHECK(mode >= 0 && mode <= 2, "bias_act: mode must be 0 (forward), 1 or 2 (derivatives), got ", mode);
    TORCH_CHECK(!ref_y || mode >= 1, "bias_act: ref_y (x is the forward output) needs mode 1 or 2, got mode ", mode);
    TORCH_CHECK(!ref_y || !(b_opt.has_value() && b_opt->defined()), "bias_act: b must be None when ref_y (the output already includes it)");
    c10::cuda::CUDAGuard guard(x_in.device());
    const at::Tensor x = x_in.is_non_overlapping_and_dense() ? x_in : x_in.contiguous();

    at::Tensor b, dy, gg;
    if (b_opt.has_value() && b_opt->defined()) {
        b = *b_opt;
        TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim must be in [0, ", x.dim(), ") for x of shape ", x.sizes(), ", got ", dim);
        TORCH_CHECK(b.device() == x.device(), "bias_act: b must be on ", x.device(), " like x, got ", b.device());
        TORCH_CHECK(b.scalar_type() == x.scalar_type(), "bias_act: b must have dtype ", x.scalar_type(), " like x, got ", b.scalar_type());
        TORCH_CHECK(b.dim() == 1 && b.numel() == x.size(dim), "bias_act: b must have shape [", x.size(dim), "] (x.shape[", dim, "]), got ", b.sizes());
        b = b.contiguous();
    }
    if (mode >= 1) {
        TORCH_CHECK(dy_opt.has_value() && dy_opt->defined(), "bias_act: dy is required for mode ", mode);
        dy = like_x(*dy_opt, x, "dy");
    }
    if (mode == 2) {
        TORCH_CHECK(gg_opt.has_value() && gg_opt->defined(), "bias_act: gg is required for mode 2");
        gg = like_x(*gg_opt, x, "gg");
    }

    at::Tensor out = at::empty_like(x);
    TORCH_CHECK(out.strides() == x.strides(), "bias_act: internal error: output strides ", out.strides(), " differ from x strides ", x.strides());
    if (x.numel() == 0) return out;

    BiasActParams p;
    p.r = x.data_ptr();
    p.b = b.defined() ? b.data_ptr() : nullptr;
    p.dy = dy.defined() ? dy.data_ptr() : nullptr;
    p.gg = gg.defined() ? gg.data_ptr() : nullptr;
    p.out = out.data_ptr();
    p.numel = x.numel();
    p.size_b = b.defined() ? x.size(dim) : 1;
    p.step_b = b.defined() ? x.stride(dim) : 1;
    p.dtype = dtype;
    p.mode = static_cast<int>(mode);
    p.act = static_cast<int>(act);
    p.ref_y = ref_y;
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;
    p.vec = aligned16(x) && aligned16(dy) && aligned16(gg) && aligned16(out);
    if (p.size_b > 0 && p.step_b < 1) p.step_b = 1;  // size-1 channel dim may carry any stride
    C10_CUDA_CHECK(bias_act_launch(p, c10::cuda::getCurrentCUDAStream(x.device().index()).stream()));
    return out;
}

}  // namespace

TORCH_LIBRARY(GANFORGE_OP_NS, m) {
    m.def("bias_act(Tensor x, Tensor? b, Tensor? dy, Tensor? gg, int dim, int act, int mode, bool ref_y, float alpha, float gain, "
          "float clamp) -> Tensor",
          &bias_act);
}
