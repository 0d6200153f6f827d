// Elementwise activations and their backward passes, for float and double; ReLU
// also for the 16-bit types (computed in float).
//
// Every kernel is a grid-stride loop over contiguous arrays of n elements, so
// one launch covers any size with a grid capped near the GPU's occupancy.
// The arithmetic follows ArrayBackend (array_backend.py) operation for
// operation, in the array's own precision, so results match CuPy/NumPy to
// rounding.

#include "common.cuh"

// one spelling per precision; overloads keep the templates below type-generic
__device__ __forceinline__ float mt_exp(float x) { return expf(x); }
__device__ __forceinline__ double mt_exp(double x) { return exp(x); }
__device__ __forceinline__ float mt_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double mt_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float mt_erf(float x) { return erff(x); }
__device__ __forceinline__ double mt_erf(double x) { return erf(x); }
__device__ __forceinline__ float mt_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double mt_abs(double x) { return fabs(x); }

// sqrt(2/pi), 1/sqrt(2), 1/sqrt(2*pi) rounded once to the array's precision,
// exactly like x.dtype.type(math.sqrt(2 / math.pi)) in the generic code
#define SQRT_2_OVER_PI 0.79788456080286535588
#define INV_SQRT_2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794

// relu(x) = maximum(x, 0); NaN propagates like NumPy's maximum
template <typename T>
__global__ void relu_forward(const T* __restrict__ x, T* __restrict__ y, long long n) {
    GRID_STRIDE(i, n) {
        const acc_t<T> v = x[i];
        y[i] = T((v > 0 || v != v) ? v : acc_t<T>(0));
    }
}

// grad * (y > 0)
template <typename T>
__global__ void relu_backward(const T* __restrict__ grad, const T* __restrict__ y, T* __restrict__ dx,
                              long long n) {
    GRID_STRIDE(i, n) { dx[i] = T(acc_t<T>(grad[i]) * (acc_t<T>(y[i]) > 0 ? 1 : 0)); }
}

template <typename T>
__global__ void leaky_relu_forward(const T* __restrict__ x, T* __restrict__ y, T slope, long long n) {
    GRID_STRIDE(i, n) {
        T v = x[i];
        y[i] = v > T(0) ? v : v * slope;
    }
}

template <typename T>
__global__ void leaky_relu_backward(const T* __restrict__ grad, const T* __restrict__ x, T* __restrict__ dx,
                                    T slope, long long n) {
    GRID_STRIDE(i, n) {
        T g = grad[i];
        dx[i] = x[i] > T(0) ? g : g * slope;
    }
}

// split by sign so exp never overflows
template <typename T>
__global__ void sigmoid_forward(const T* __restrict__ x, T* __restrict__ y, long long n) {
    GRID_STRIDE(i, n) {
        T v = x[i];
        T e = mt_exp(-mt_abs(v));
        y[i] = v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
}

// grad * y * (1 - y)
template <typename T>
__global__ void sigmoid_backward(const T* __restrict__ grad, const T* __restrict__ y, T* __restrict__ dx,
                                 long long n) {
    GRID_STRIDE(i, n) {
        T s = y[i];
        dx[i] = grad[i] * s * (T(1) - s);
    }
}

template <typename T>
__global__ void tanh_forward(const T* __restrict__ x, T* __restrict__ y, long long n) {
    GRID_STRIDE(i, n) { y[i] = mt_tanh(x[i]); }
}

// grad * (1 - y^2)
template <typename T>
__global__ void tanh_backward(const T* __restrict__ grad, const T* __restrict__ y, T* __restrict__ dx,
                              long long n) {
    GRID_STRIDE(i, n) {
        T t = y[i];
        dx[i] = grad[i] * (T(1) - t * t);
    }
}

// approximate == 0: x * Phi(x) with the exact erf;
// approximate != 0: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// GELU computes in acc_t<T> (float for the 2-byte types) and rounds once, as PyTorch does
template <typename T>
__global__ void gelu_forward(const T* __restrict__ x, T* __restrict__ y, int approximate, long long n) {
    typedef acc_t<T> P;
    const P half = P(0.5);
    GRID_STRIDE(i, n) {
        const P v = x[i];
        if (approximate) {
            const P inner = P(SQRT_2_OVER_PI) * (v + P(0.044715) * (v * v * v));
            y[i] = T(half * v * (P(1) + mt_tanh(inner)));
        } else {
            y[i] = T(half * v * (P(1) + mt_erf(v * P(INV_SQRT_2))));
        }
    }
}

template <typename T>
__global__ void gelu_backward(const T* __restrict__ grad, const T* __restrict__ x, T* __restrict__ dx,
                              int approximate, long long n) {
    typedef acc_t<T> P;
    const P half = P(0.5);
    GRID_STRIDE(i, n) {
        const P v = x[i];
        P d;
        if (approximate) {
            const P k = P(SQRT_2_OVER_PI);
            const P inner = k * (v + P(0.044715) * (v * v * v));
            const P th = mt_tanh(inner);
            d = half * (P(1) + th) + half * v * (P(1) - th * th) * k * (P(1) + P(3 * 0.044715) * v * v);
        } else {
            const P cdf = half * (P(1) + mt_erf(v * P(INV_SQRT_2)));
            const P pdf = mt_exp(P(-0.5) * v * v) * P(INV_SQRT_2PI);
            d = cdf + v * pdf;
        }
        dx[i] = T(P(grad[i]) * d);
    }
}

// Explicit instantiations: NVRTC finds these through name_expressions
// ("relu_forward<float>", ...); nvcc --ptx compiles them all in the CI check.
#define MT_INSTANTIATE_SIXTEEN_BIT(T)                                                             \
    template __global__ void relu_forward<T>(const T*, T*, long long);                            \
    template __global__ void relu_backward<T>(const T*, const T*, T*, long long);                 \
    template __global__ void gelu_forward<T>(const T*, T*, int, long long);                       \
    template __global__ void gelu_backward<T>(const T*, const T*, T*, int, long long);
#define MT_INSTANTIATE(T)                                                                         \
    MT_INSTANTIATE_SIXTEEN_BIT(T)                                                             \
    template __global__ void leaky_relu_forward<T>(const T*, T*, T, long long);                   \
    template __global__ void leaky_relu_backward<T>(const T*, const T*, T*, T, long long);        \
    template __global__ void sigmoid_forward<T>(const T*, T*, long long);                         \
    template __global__ void sigmoid_backward<T>(const T*, const T*, T*, long long);              \
    template __global__ void tanh_forward<T>(const T*, T*, long long);                            \
    template __global__ void tanh_backward<T>(const T*, const T*, T*, long long);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
MT_INSTANTIATE_SIXTEEN_BIT(bf16_t)
MT_INSTANTIATE_SIXTEEN_BIT(half_t)
