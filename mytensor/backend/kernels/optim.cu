// Fused multi-tensor optimizer steps: every parameter of one dtype is updated
// by a single launch.
//
// `table` is a device array of long longs describing nt tensors:
//   table[f*nt + k]  for f < nfields: the device address of field f of tensor k
//                    (SGD: param, grad, momentum buffer or 0;
//                     Adam: param, grad, exp_avg, exp_avg_sq)
//   table[nfields*nt + k], k <= nt: the prefix sums of the tensor sizes
// A grid-stride loop walks the concatenated elements; a binary search over the
// prefix sums finds the tensor of each element.
//
// The hyperparameters of the step (learning rate, momentum, bias corrections,
// ...) are read from `scalars`, a small float64 array in device memory that
// the host rewrites before each step with `set_scalars`. A launch captured in
// a CUDA graph therefore uses the values of the step it is replayed for, not
// those of the step it was recorded in. Each value is rounded to T where the
// generic update rounds it, and the arithmetic follows ArrayBackend
// (PyTorch's formulation) operation for operation. This module is compiled
// with --fmad=false so that no multiply-add is contracted and every step
// rounds where the generic version rounds.

#include "common.cuh"

// index k of the tensor holding element i: the largest k with starts[k] <= i
__device__ __forceinline__ int find_tensor(const long long* __restrict__ starts, int nt, long long i) {
    int lo = 0, hi = nt - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (starts[mid] <= i) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// out[0..n) = the values, passed as kernel arguments (n <= 8): a launch copies
// them, so the host may change its own copy right away and never waits.
template <typename T>
__global__ void set_scalars(T* out, int n, T s0, T s1, T s2, T s3, T s4, T s5, T s6, T s7) {
    const T s[8] = {s0, s1, s2, s3, s4, s5, s6, s7};
    if ((int)threadIdx.x < n) out[threadIdx.x] = s[threadIdx.x];
}

// scalars: lr, momentum, dampening, weight_decay
// g = g + wd*p (if has_wd);  with momentum: buf = g on the first step, else
// buf = momentum*buf + (1-dampening)*g; g = g + momentum*buf (nesterov) or buf;
// p = p - lr*g. Nothing changes when the flag `skip` (may be null) is not 0:
// a loss scaler found an inf or nan among the gradients.
template <typename T>
__global__ void sgd_multi_tensor(const long long* __restrict__ table, int nt, long long total,
                                 const double* __restrict__ scalars, int has_wd, int has_momentum, int nesterov,
                                 int first_step, const float* __restrict__ skip) {
    if (skip && *skip != 0.0f) return;
    const T lr = (T)scalars[0], momentum = (T)scalars[1], one_minus_dampening = (T)(1.0 - scalars[2]);
    const T weight_decay = (T)scalars[3];
    const long long* starts = table + 3 * nt;
    GRID_STRIDE(i, total) {
        const int k = find_tensor(starts, nt, i);
        const long long j = i - starts[k];
        T* p = reinterpret_cast<T*>(table[k]);
        const T* gr = reinterpret_cast<const T*>(table[nt + k]);
        T pv = p[j];
        T g = gr[j];
        if (has_wd) g = g + weight_decay * pv;
        if (has_momentum) {
            T* buf = reinterpret_cast<T*>(table[2 * nt + k]);
            T b;
            if (first_step) {
                b = g;
            } else {
                b = buf[j] * momentum;
                b = b + one_minus_dampening * g;
            }
            buf[j] = b;
            g = nesterov ? g + momentum * b : b;
        }
        p[j] = pv - lr * g;
    }
}

// scalars: lr/bc1, beta1, beta2, sqrt(bc2), eps, weight_decay, 1 - lr*weight_decay
// (bc = 1 - beta^step, the bias corrections).
// mode 0: no weight decay; 1: Adam's L2 (g += wd*p); 2: AdamW's decoupled
// decay (p *= 1 - lr*wd).
// m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g
// p = p - (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps); `skip` as for SGD.
template <typename T>
__global__ void adam_multi_tensor(const long long* __restrict__ table, int nt, long long total,
                                  const double* __restrict__ scalars, int mode, const float* __restrict__ skip) {
    if (skip && *skip != 0.0f) return;
    const T lr_over_bc1 = (T)scalars[0], beta1 = (T)scalars[1], one_minus_beta1 = (T)(1.0 - scalars[1]);
    const T beta2 = (T)scalars[2], one_minus_beta2 = (T)(1.0 - scalars[2]), sqrt_bc2 = (T)scalars[3];
    const T eps = (T)scalars[4], weight_decay = (T)scalars[5], decay = (T)scalars[6];
    const long long* starts = table + 4 * nt;
    GRID_STRIDE(i, total) {
        const int k = find_tensor(starts, nt, i);
        const long long j = i - starts[k];
        T* p = reinterpret_cast<T*>(table[k]);
        const T* gr = reinterpret_cast<const T*>(table[nt + k]);
        T* ma = reinterpret_cast<T*>(table[2 * nt + k]);
        T* va = reinterpret_cast<T*>(table[3 * nt + k]);
        T pv = p[j];
        T g = gr[j];
        if (mode == 2) pv = pv * decay;
        else if (mode == 1) g = g + weight_decay * pv;
        T m = ma[j] * beta1;
        m = m + one_minus_beta1 * g;
        T v = va[j] * beta2;
        v = v + one_minus_beta2 * g * g;
        ma[j] = m;
        va[j] = v;
        T denom = mt_sqrt(v) / sqrt_bc2 + eps;
        p[j] = pv - lr_over_bc1 * m / denom;
    }
}

#define MT_INSTANTIATE(T)                                                                                  \
    template __global__ void set_scalars<T>(T*, int, T, T, T, T, T, T, T, T);                              \
    template __global__ void sgd_multi_tensor<T>(const long long*, int, long long, const double*, int, int, \
                                                 int, int, const float*);                                  \
    template __global__ void adam_multi_tensor<T>(const long long*, int, long long, const double*, int,     \
                                                  const float*);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
