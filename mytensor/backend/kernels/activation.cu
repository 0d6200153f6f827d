// Elementwise activations and their backward passes, for float and double; ReLU
// also for the 16-bit types (computed in float).
//
// Every kernel is a grid-stride loop over contiguous arrays of n elements, so
// one launch covers any size with a grid capped near the GPU's occupancy.
// The arithmetic follows ArrayBackend (array_backend.py) operation for
// operation, in the array's own precision, so results match CuPy/NumPy to
// rounding.

#include "common.cuh"
#include "activation.cuh"

// relu(x) = maximum(x, 0); NaN propagates like NumPy's maximum
template <typename T>
__global__ void relu_forward(const T* __restrict__ x, T* __restrict__ y, long long n) {
    GRID_STRIDE(i, n) {
        y[i] = T(relu_value(acc_t<T>(x[i])));
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
    GRID_STRIDE(i, n) { y[i] = T(gelu_value(acc_t<T>(x[i]), approximate != 0)); }
}

template <typename T>
__global__ void gelu_backward(const T* __restrict__ grad, const T* __restrict__ x, T* __restrict__ dx,
                              int approximate, long long n) {
    typedef acc_t<T> P;
    GRID_STRIDE(i, n) { dx[i] = T(P(grad[i]) * gelu_slope(P(x[i]), approximate != 0)); }
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
