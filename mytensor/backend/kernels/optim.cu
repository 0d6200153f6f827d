// Fused multi-tensor optimizer steps: every parameter of one dtype is updated
// by a single launch.
//
// `table` is a device array of long longs describing nt tensors:
//   table[f*nt + k]  for f < nfields: the device address of field f of tensor k
//                    (SGD: param, grad, momentum buffer or 0;
//                     Adam: param, grad, exp_avg, exp_avg_sq)
//   table[nfields*nt + k], k <= nt: the prefix sums of the tensor sizes
// A grid-stride loop walks the concatenated elements; a binary search over the
// prefix sums finds the tensor of each element. Scalars (learning rate,
// momentum, bias corrections, ...) arrive as kernel arguments, already rounded
// to the parameter dtype on the host, and the arithmetic follows ArrayBackend
// (PyTorch's formulation) operation for operation. This module is compiled
// with --fmad=false so that no multiply-add is contracted and every step
// rounds where the generic version rounds.

#define GRID_STRIDE(i, n)                                                        \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

__device__ __forceinline__ float mt_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double mt_sqrt(double x) { return sqrt(x); }

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

// g = g + wd*p (if has_wd);  with momentum: buf = g on the first step, else
// buf = momentum*buf + (1-dampening)*g; g = g + momentum*buf (nesterov) or buf;
// p = p - lr*g
template <typename T>
__global__ void sgd_multi_tensor(const long long* __restrict__ table, int nt, long long total, T lr, T momentum,
                                 T one_minus_dampening, T weight_decay, int has_wd, int has_momentum, int nesterov,
                                 int first_step) {
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

// mode 0: no weight decay; 1: Adam's L2 (g += wd*p); 2: AdamW's decoupled
// decay (p *= 1 - lr*wd, passed as decay).
// m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g
// p = p - (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
template <typename T>
__global__ void adam_multi_tensor(const long long* __restrict__ table, int nt, long long total, T lr_over_bc1,
                                  T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T sqrt_bc2, T eps,
                                  T weight_decay, T decay, int mode) {
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

#define MT_INSTANTIATE(T)                                                                                    \
    template __global__ void sgd_multi_tensor<T>(const long long*, int, long long, T, T, T, T, int, int, int, \
                                                 int);                                                       \
    template __global__ void adam_multi_tensor<T>(const long long*, int, long long, T, T, T, T, T, T, T, T, T, \
                                                  int);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
