// The activations' formulas as device functions, for the elementwise kernels of activation.cu and
// the batch-norm passes that fuse an activation (batch_norm.cu). Each computes in its argument's
// precision (acc_t<T>: float for the 16-bit types), as PyTorch does.
#pragma once

// sqrt(2/pi), 1/sqrt(2), 1/sqrt(2*pi) rounded once to the precision used,
// exactly like x.dtype.type(math.sqrt(2 / math.pi)) in the generic code
#define SQRT_2_OVER_PI 0.79788456080286535588
#define INV_SQRT_2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794

// relu(v) = maximum(v, 0); NaN propagates like NumPy's maximum
template <typename P> __device__ __forceinline__ P relu_value(P v) { return (v > 0 || v != v) ? v : P(0); }

// approximate == 0: v * Phi(v) with the exact erf;
// approximate != 0: 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)))
template <typename P> __device__ __forceinline__ P gelu_value(P v, bool approximate) {
    const P half = P(0.5);
    if (approximate) return half * v * (P(1) + mt_tanh(P(SQRT_2_OVER_PI) * (v + P(0.044715) * (v * v * v))));
    return half * v * (P(1) + mt_erf(v * P(INV_SQRT_2)));
}

// d gelu(v) / dv, for the same two forms
template <typename P> __device__ __forceinline__ P gelu_slope(P v, bool approximate) {
    const P half = P(0.5);
    if (approximate) {
        const P k = P(SQRT_2_OVER_PI);
        const P th = mt_tanh(k * (v + P(0.044715) * (v * v * v)));
        return half * (P(1) + th) + half * v * (P(1) - th * th) * k * (P(1) + P(3 * 0.044715) * v * v);
    }
    const P cdf = half * (P(1) + mt_erf(v * P(INV_SQRT_2)));
    return cdf + v * mt_exp(P(-0.5) * v * v) * P(INV_SQRT_2PI);
}

// The activation a batch-norm pass applies to its output z (ACT_*: the codes the host passes)
enum { ACT_NONE = 0, ACT_RELU = 1, ACT_GELU = 2, ACT_GELU_TANH = 3 };

template <typename P> __device__ __forceinline__ P activate(int act, P z) {
    if (act == ACT_RELU) return relu_value(z);
    if (act >= ACT_GELU) return gelu_value(z, act == ACT_GELU_TANH);
    return z;
}

// g * act'(z): the gradient at the activation's input z, given the gradient g at its output
template <typename P> __device__ __forceinline__ P activate_backward(int act, P z, P g) {
    if (act == ACT_RELU) return z > 0 ? g : P(0);
    if (act >= ACT_GELU) return g * gelu_slope(z, act == ACT_GELU_TANH);
    return g;
}
