// Host side of the modulation kernel: argument checks, output allocation, launch on the current
// stream. Registered as torch.ops.<GANFORGE_OP_NS>.modulate; returns (w, dcoefs), where an output
// that was not requested is an empty tensor.
#include <tuple>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "modconv.h"

#ifndef GANFORGE_OP_NS
#error "GANFORGE_OP_NS must name the operator namespace (set by ops/_build.py or setup_ext.py)"
#endif

namespace {

std::tuple<at::Tensor, at::Tensor> modulate(const at::Tensor& weight_in, const at::Tensor& styles_in, bool demodulate, bool fused) {
    TORCH_CHECK(weight_in.is_cuda(), "modulate: weight must be a CUDA tensor, got device ", weight_in.device());
    TORCH_CHECK(styles_in.device() == weight_in.device(), "modulate: styles must be on ", weight_in.device(), " like weight, got ", styles_in.device());
    TORCH_CHECK(weight_in.dim() == 4, "modulate: weight must have shape [O, I, kh, kw], got ", weight_in.sizes());
    TORCH_CHECK(styles_in.dim() == 2 && styles_in.size(1) == weight_in.size(1),
                "modulate: styles must have shape [N, ", weight_in.size(1), "] (I = weight.shape[1]), got ", styles_in.sizes());
    TORCH_CHECK(styles_in.scalar_type() == weight_in.scalar_type(), "modulate: styles must have dtype ", weight_in.scalar_type(), " like weight, got ", styles_in.scalar_type());
    int dtype = -1;
    switch (weight_in.scalar_type()) {
    case at::kFloat: dtype = 0; break;
    case at::kHalf: dtype = 1; break;
    case at::kBFloat16: dtype = 2; break;
    case at::kDouble: dtype = 3; break;
    default: TORCH_CHECK(false, "modulate: weight must be float32, float16, bfloat16 or float64, got ", weight_in.scalar_type());
    }
    TORCH_CHECK(weight_in.size(0) <= 2147483647 && styles_in.size(0) <= 65535,
                "modulate: at most 2^31-1 output channels and 65535 samples, got weight ", weight_in.sizes(), " and styles ", styles_in.sizes());
    c10::cuda::CUDAGuard guard(weight_in.device());
    const at::Tensor weight = weight_in.contiguous(), styles = styles_in.contiguous();
    const int64_t N = styles.size(0), O = weight.size(0), I = weight.size(1), K = weight.size(2) * weight.size(3);

    at::Tensor w = fused ? at::empty({N, O, I, weight.size(2), weight.size(3)}, weight.options()) : at::empty({0}, weight.options());
    at::Tensor d = demodulate ? at::empty({N, O}, weight.options()) : at::empty({0}, weight.options());
    if ((!fused && !demodulate) || N == 0 || O == 0) return {w, d};
    if (I * K == 0) {  // no inputs: v is empty, dcoefs = rsqrt(1e-8)
        if (demodulate) d.fill_(1e4);
        return {w, d};
    }

    ModulateParams p;
    p.weight = weight.data_ptr();
    p.styles = styles.data_ptr();
    p.w = fused ? w.data_ptr() : nullptr;
    p.dcoefs = demodulate ? d.data_ptr() : nullptr;
    p.n = N;
    p.o = O;
    p.i = I;
    p.k = K;
    p.dtype = dtype;
    C10_CUDA_CHECK(modulate_launch(p, c10::cuda::getCurrentCUDAStream(weight.device().index()).stream()));
    return {w, d};
}

}  // namespace

TORCH_LIBRARY(GANFORGE_OP_NS, m) {
    m.def("modulate(Tensor weight, Tensor styles, bool demodulate, bool fused) -> (Tensor, Tensor)", &modulate);
}
