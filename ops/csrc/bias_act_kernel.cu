// Fused bias + activation kernels: forward, first and second derivative, elementwise over a
// dense tensor in any memory order, with 128-bit loads when every pointer is aligned.
#include "bias_act.h"
#include "common.cuh"

using namespace ganforge;

namespace {

// Activation value f, first derivative d1 and second derivative d2 at s.
template <typename A>
__device__ __forceinline__ void activation(int act, A s, A alpha, A& f, A& d1, A& d2) {
    const A one = 1, zero = 0;
    switch (act) {
    case kRelu:    f = s > zero ? s : zero; d1 = s > zero ? one : zero; d2 = zero; break;
    case kLrelu:   f = s > zero ? s : s * alpha; d1 = s > zero ? one : alpha; d2 = zero; break;
    case kTanh: {  A t = tanh(s); f = t; d1 = one - t * t; d2 = A(-2) * t * d1; break; }
    case kSigmoid: { A g = one / (one + exp(-s)); f = g; d1 = g * (one - g); d2 = d1 * (one - A(2) * g); break; }
    case kElu: {   A e = exp(s); f = s > zero ? s : expm1(s); d1 = s > zero ? one : e; d2 = s < zero ? e : zero; break; }  // PyTorch's choices at s = 0
    case kSelu: {
        const A l = A(1.0507009873554804934193349852946), a = A(1.6732632423543772848170429916717);
        A e = exp(s);
        f = s > zero ? l * s : l * a * expm1(s); d1 = s > zero ? l : l * a * e; d2 = s < zero ? l * a * e : zero; break;
    }
    case kSoftplus: {  // PyTorch threshold 20: linear above it
        A g = one / (one + exp(-s));
        f = s > A(20) ? s : log1p(exp(s)); d1 = s > A(20) ? one : g; d2 = s > A(20) ? zero : g * (one - g); break;
    }
    case kSwish: {
        A g = one / (one + exp(-s)), gd = g * (one - g);
        f = s * g; d1 = g + s * gd; d2 = gd * (A(2) + s * (one - A(2) * g)); break;
    }
    default:       f = s; d1 = one; d2 = zero; break;  // linear
    }
}

// First derivative d1 and its derivative with respect to the activation value, d1y = d act' / d act,
// from the activation value f = act(s), for the activations whose derivatives follow from it.
template <typename A>
__device__ __forceinline__ void activation_from_y(int act, A f, A alpha, A& d1, A& d1y) {
    const A one = 1, zero = 0;
    switch (act) {
    case kRelu:     d1 = f > zero ? one : zero; d1y = zero; break;
    case kLrelu:    d1 = f > zero ? one : alpha; d1y = zero; break;
    case kTanh:     d1 = one - f * f; d1y = A(-2) * f; break;
    case kSigmoid:  d1 = f * (one - f); d1y = one - A(2) * f; break;
    case kElu:      d1 = f > zero ? one : f + one; d1y = f < zero ? one : zero; break;  // PyTorch's choices at 0
    case kSelu: {
        const A l = A(1.0507009873554804934193349852946), la = A(1.7580993408473768599402175208123);  // lambda, lambda * alpha
        d1 = f > zero ? l : f + la; d1y = f < zero ? one : zero; break;
    }
    case kSoftplus: d1 = -expm1(-f); d1y = exp(-f); break;  // sigmoid(s) = 1 - exp(-softplus(s))
    default:        d1 = one; d1y = zero; break;  // linear
    }
}

// clamp_t is the clamp limit as stored in the element type: what a clamped output reads back as.
template <typename A>
__device__ __forceinline__ A bias_act_value(const BiasActParams& p, A clamp_t, A r, A b, A dy, A gg) {
    const A gain = A(p.gain), clamp = A(p.clamp), alpha = A(p.alpha);
    if (p.ref_y) {
        A d1, d1y;
        activation_from_y<A>(p.act, gain != A(0) ? r / gain : A(0), alpha, d1, d1y);
        if (clamp >= A(0) && !(r < clamp_t && r > -clamp_t)) return A(0);
        return (p.mode == 1) ? dy * gain * d1 : gg * dy * d1y;
    }
    A f, d1, d2;
    activation<A>(p.act, r + b, alpha, f, d1, d2);
    f *= gain;
    if (p.mode == 0) return (clamp >= A(0)) ? (f > clamp ? clamp : (f < -clamp ? -clamp : f)) : f;
    if (clamp >= A(0) && !(f <= clamp && f >= -clamp)) return A(0);
    return (p.mode == 1) ? dy * gain * d1 : gg * dy * gain * d2;
}

// Grid-stride loop over 16-byte vectors, then a scalar loop over the remainder.
// I is int32_t when every index fits, int64_t otherwise.
template <typename T, typename I>
__global__ void __launch_bounds__(256) bias_act_kernel(BiasActParams p) {
    using A = typename Acc<T>::type;
    constexpr int V = Vec16<T>::V;
    const T* x = static_cast<const T*>(p.r);
    const T* b = static_cast<const T*>(p.b);
    const T* dy = static_cast<const T*>(p.dy);
    const T* gg = static_cast<const T*>(p.gg);
    T* out = static_cast<T*>(p.out);
    const I numel = static_cast<I>(p.numel), size_b = static_cast<I>(p.size_b), step_b = static_cast<I>(p.step_b);
    const I stride = static_cast<I>(blockDim.x) * gridDim.x;
    const I first = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x;

    const A clamp_t = to_acc(from_acc<T>(A(p.clamp)));
    const I nvec = p.vec ? numel / V : 0;
    for (I v = first; v < nvec; v += stride) {
        const I i0 = v * V;
        Vec16<T> xv, dv, gv, ov;
        load16(xv, x + i0);
        if (p.mode >= 1) load16(dv, dy + i0);
        if (p.mode == 2) load16(gv, gg + i0);
        // Channel of the first element, then advance it element by element (no division per element).
        I q = b ? i0 / step_b : 0, r = b ? i0 - q * step_b : 0, c = b ? q % size_b : 0;
#pragma unroll
        for (int j = 0; j < V; j++) {
            const A bj = b ? to_acc(b[c]) : A(0);
            const A dj = p.mode >= 1 ? to_acc(dv.v[j]) : A(0);
            const A gj = p.mode == 2 ? to_acc(gv.v[j]) : A(0);
            ov.v[j] = from_acc<T>(bias_act_value<A>(p, clamp_t, to_acc(xv.v[j]), bj, dj, gj));
            if (b && ++r == step_b) { r = 0; if (++c == size_b) c = 0; }
        }
        store16(out + i0, ov);
    }
    for (I i = nvec * V + first; i < numel; i += stride) {
        const A bi = b ? to_acc(b[(i / step_b) % size_b]) : A(0);
        const A di = p.mode >= 1 ? to_acc(dy[i]) : A(0);
        const A gi = p.mode == 2 ? to_acc(gg[i]) : A(0);
        out[i] = from_acc<T>(bias_act_value<A>(p, clamp_t, to_acc(x[i]), bi, di, gi));
    }
}

template <typename T>
cudaError_t launch_typed(const BiasActParams& p, cudaStream_t stream) {
    const int threads = 256;
    const int64_t work = p.vec ? p.numel / Vec16<T>::V + Vec16<T>::V : p.numel;
    const unsigned int blocks = grid_blocks(work, threads, 8192);
    if (p.numel < (int64_t(1) << 30))
        bias_act_kernel<T, int32_t><<<blocks, threads, 0, stream>>>(p);
    else
        bias_act_kernel<T, int64_t><<<blocks, threads, 0, stream>>>(p);
    return cudaGetLastError();
}

}  // namespace

cudaError_t bias_act_launch(const BiasActParams& p, cudaStream_t stream) {
    switch (p.dtype) {
    case kFloat32:  return launch_typed<float>(p, stream);
    case kFloat16:  return launch_typed<__half>(p, stream);
    case kBFloat16: return launch_typed<__nv_bfloat16>(p, stream);
    case kFloat64:  return launch_typed<double>(p, stream);
    default:        return cudaErrorInvalidValue;
    }
}
