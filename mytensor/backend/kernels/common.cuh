// What every kernel file shares: the grid-stride loop, infinities, the math functions, and the 16-bit
// storage types with the arithmetic type they compute in.
//
// bf16_t and half_t are 2-byte storage types (bfloat16 and IEEE float16) written
// without CUDA's headers, so NVRTC needs no include path. They convert to and from
// float (round to nearest even, as ml_dtypes and PyTorch do), so a kernel template
// reads `acc_t<T> v = x[i]`, computes in float, and stores `y[i] = T(v)`; for
// float and double, acc_t<T> is T itself.
#pragma once

#define GRID_STRIDE(i, n)                                                        \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// the math functions, one spelling for both precisions: overloads keep the templates type-generic
__device__ __forceinline__ float mt_exp(float x) { return expf(x); }
__device__ __forceinline__ double mt_exp(double x) { return exp(x); }
__device__ __forceinline__ float mt_log(float x) { return logf(x); }
__device__ __forceinline__ double mt_log(double x) { return log(x); }
__device__ __forceinline__ float mt_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double mt_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float mt_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double mt_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float mt_erf(float x) { return erff(x); }
__device__ __forceinline__ double mt_erf(double x) { return erf(x); }
__device__ __forceinline__ float mt_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double mt_abs(double x) { return fabs(x); }

struct bf16_t {
    unsigned short bits;
    bf16_t() = default;
    __device__ __forceinline__ bf16_t(float f) {
        unsigned int u = __float_as_uint(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            bits = (unsigned short)((u >> 16) | 0x40u);  // NaN stays a (quiet) NaN
        } else {
            u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
            bits = (unsigned short)(u >> 16);
        }
    }
    __device__ __forceinline__ operator float() const { return __uint_as_float((unsigned int)bits << 16); }
};

struct half_t {
    unsigned short bits;
    half_t() = default;
    __device__ __forceinline__ half_t(float f) { asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(f)); }
    __device__ __forceinline__ operator float() const {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits));
        return f;
    }
};

template <typename T> struct Acc { typedef T type; };
template <> struct Acc<bf16_t> { typedef float type; };
template <> struct Acc<half_t> { typedef float type; };
template <typename T> using acc_t = typename Acc<T>::type;  // what T computes in

// The elements of one 16-byte load or store (8 of a 2-byte type, 4 floats, 2 doubles)
template <typename T> struct alignas(16) Pack {
    static const int W = 16 / sizeof(T);
    T v[W];
};

template <typename T> __device__ __forceinline__ T neg_inf() { return T(__int_as_float(0xff800000)); }
template <> __device__ __forceinline__ double neg_inf<double>() { return __longlong_as_double(0xfff0000000000000LL); }

// x[0] += v for the 2-byte types, through a compare-and-swap of the aligned 32-bit
// word holding x[0] (native 16-bit float atomics need newer GPUs or CUDA's headers)
template <typename T> __device__ __forceinline__ void atomic_add_16(T* x, float v) {
    unsigned int* word = (unsigned int*)((size_t)x & ~(size_t)3);
    const unsigned int shift = ((size_t)x & 2) ? 16u : 0u;
    unsigned int old = *word, assumed;
    do {
        assumed = old;
        T cur;
        cur.bits = (unsigned short)(assumed >> shift);
        const T sum = T(float(cur) + v);
        const unsigned int next = (assumed & ~(0xffffu << shift)) | ((unsigned int)sum.bits << shift);
        old = atomicCAS(word, assumed, next);
    } while (old != assumed);
}
__device__ __forceinline__ void atomic_add(float* x, float v) { atomicAdd(x, v); }
__device__ __forceinline__ void atomic_add(double* x, double v) { atomicAdd(x, v); }
__device__ __forceinline__ void atomic_add(bf16_t* x, float v) { atomic_add_16(x, v); }
__device__ __forceinline__ void atomic_add(half_t* x, float v) { atomic_add_16(x, v); }
