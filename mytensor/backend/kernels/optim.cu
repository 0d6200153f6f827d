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

// ---------------------------------------------------------------- Muon
// optim.Muon's step for nt tensors of one dtype in three launches around the Newton-Schulz
// GEMMs, each on a grid (chunks, nt) whose blockIdx.y is the tensor. `table` holds the fields
// param, grad, momentum buffer, then each tensor's rows (its first dimension) and the bits of
// its lr ratio (a double), then the prefix sums of the sizes. A tensor is the matrix
// (rows, size / rows) of its elements in memory order (a channels-last filter's columns come
// permuted, which the orthogonalisation commutes with), and its bfloat16 direction lives in the
// stack x from x + start, transposed when it has more rows than columns, as the iteration
// runs on wide matrices. scalars: lr, momentum, weight_decay.
template <typename T> struct MuonTensor {
    T* p;
    const T* g;
    T* buf;
    long long rows, cols, start, size;
    double ratio;
    __device__ MuonTensor(const long long* __restrict__ table, int nt, int k) {
        p = reinterpret_cast<T*>(table[k]);
        g = reinterpret_cast<const T*>(table[nt + k]);
        buf = reinterpret_cast<T*>(table[2 * nt + k]);
        rows = table[3 * nt + k];
        ratio = __longlong_as_double(table[4 * nt + k]);
        start = table[5 * nt + k];
        size = table[5 * nt + k + 1] - start;
        cols = size / rows;
    }
    // where element j (in memory order) of the tensor's matrix sits in the stack
    __device__ __forceinline__ long long place(long long j) const {
        return start + (rows > cols ? (j % cols) * rows + j / cols : j);
    }
};

#define MUON_LOOP(j, size) \
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < (size); j += (long long)gridDim.x * blockDim.x)

// *out += the sum of v over the block (one atomic a block); every thread of the block calls it
template <typename P> __device__ __forceinline__ void block_add(P v, P* out) {
    __shared__ P part[32];
    for (int o = 16; o; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (!lane) part[warp] = v;
    __syncthreads();
    if (!warp) {
        v = lane < (int)(blockDim.x >> 5) ? part[lane] : P(0);
        for (int o = 16; o; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
        if (!lane) atomicAdd(out, v);
    }
    __syncthreads();
}

// buf = buf + (1 - momentum) (g - buf); u = g + momentum (buf - g) (nesterov) or buf; the stack
// gets u rounded to bfloat16, xsum[k] (zeroed before) the sum of its squares, and with
// `normalize` psum[k] (zeroed before) the sum of the parameter's squares.
template <typename T>
__global__ void muon_momentum(const long long* __restrict__ table, int nt, const double* __restrict__ scalars,
                              int nesterov, int normalize, bf16_t* __restrict__ x, float* __restrict__ xsum,
                              T* __restrict__ psum, const float* __restrict__ skip) {
    if (skip && *skip != 0.0f) return;
    const T momentum = (T)scalars[1], one_minus_momentum = (T)(1.0 - scalars[1]);
    const MuonTensor<T> t(table, nt, blockIdx.y);
    float xs = 0.0f;
    T ps = T(0);
    MUON_LOOP(j, t.size) {
        const T g = t.g[j];
        T b = t.buf[j];
        b = b + one_minus_momentum * (g - b);
        t.buf[j] = b;
        const bf16_t u((float)(nesterov ? g + momentum * (b - g) : b));
        x[t.place(j)] = u;
        xs += (float)u * (float)u;
        if (normalize) ps += t.p[j] * t.p[j];
    }
    block_add(xs, xsum + blockIdx.y);
    if (normalize) block_add(ps, psum + blockIdx.y);
}

// each tensor's direction divided by max(its norm, eps): the iteration's start
template <typename T>
__global__ void muon_scale(const long long* __restrict__ table, int nt, bf16_t* __restrict__ x,
                           const float* __restrict__ xsum, float eps, const float* __restrict__ skip) {
    if (skip && *skip != 0.0f) return;
    const MuonTensor<T> t(table, nt, blockIdx.y);
    const float norm = fmaxf(sqrtf(xsum[blockIdx.y]), eps);
    MUON_LOOP(j, t.size) x[t.start + j] = bf16_t((float)x[t.start + j] / norm);
}

// with `normalize` p = p * sqrt(rows) / |p| first; then p = p * (1 - lr weight_decay) - lr ratio o,
// o the tensor's orthogonalised direction in the stack
template <typename T>
__global__ void muon_apply(const long long* __restrict__ table, int nt, const double* __restrict__ scalars,
                           const bf16_t* __restrict__ x, const T* __restrict__ psum, int normalize,
                           const float* __restrict__ skip) {
    if (skip && *skip != 0.0f) return;
    const MuonTensor<T> t(table, nt, blockIdx.y);
    const T scale = normalize ? (T)(sqrt((double)t.rows) / (double)mt_sqrt(psum[blockIdx.y])) : T(1);
    const T decay = (T)(1.0 - scalars[0] * scalars[2]), step = (T)(scalars[0] * t.ratio);
    MUON_LOOP(j, t.size) {
        T pv = t.p[j];
        if (normalize) pv = pv * scale;
        pv = pv * decay;
        t.p[j] = pv - step * (T)(float)x[t.place(j)];
    }
}

#define MT_INSTANTIATE(T)                                                                                  \
    template __global__ void set_scalars<T>(T*, int, T, T, T, T, T, T, T, T);                              \
    template __global__ void sgd_multi_tensor<T>(const long long*, int, long long, const double*, int, int, \
                                                 int, int, const float*);                                  \
    template __global__ void adam_multi_tensor<T>(const long long*, int, long long, const double*, int,     \
                                                  const float*);                                           \
    template __global__ void muon_momentum<T>(const long long*, int, const double*, int, int, bf16_t*, float*, \
                                              T*, const float*);                                           \
    template __global__ void muon_scale<T>(const long long*, int, bf16_t*, const float*, float, const float*); \
    template __global__ void muon_apply<T>(const long long*, int, const double*, const bf16_t*, const T*, int, \
                                           const float*);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
