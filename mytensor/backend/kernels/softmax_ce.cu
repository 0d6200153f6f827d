// Fused softmax cross-entropy over rows of logits (N, C), numerically stable
// (the row maximum is subtracted before exp), with label smoothing and an
// ignored target index.
//
// Forward: blockDim.x threads share a row and blockDim.y rows share a block.
// With blockDim.x == 32 a row is one warp and reduces by shuffles only; with
// blockDim.x > 32 (a multiple of 32) blockDim.y must be 1 and the warps of
// the block combine partials through shared memory.

#include "common.cuh"

template <typename T> __device__ __forceinline__ T quiet_nan();
template <> __device__ __forceinline__ float quiet_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double quiet_nan<double>() { return __longlong_as_double(0x7ff8000000000000LL); }

struct MaxOp {  // NaN-propagating, like NumPy's max
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const {
        return (a > b || a != a) ? a : b;
    }
};
struct SumOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

// Every thread of the row gets the reduction of v over the row.
// `partials` is shared memory of 32 entries (used only when blockDim.x > 32).
template <typename T, typename Op>
__device__ __forceinline__ T row_reduce(T v, Op op, T* partials) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
    if (blockDim.x <= 32) return v;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    __syncthreads();  // earlier readers of partials are done
    if (lane == 0) partials[warp] = v;
    __syncthreads();
    v = partials[0];
    for (int k = 1; k < nwarps; ++k) v = op(v, partials[k]);  // same order in every thread
    return v;
}

// loss[i] = -(1-eps) log p[i, t_i] - eps/C sum_j log p[i, j]   (0 where t_i == ignore_index,
// NaN for a target outside [0, C)); probs = softmax(logits) for every row.
template <typename T>
__global__ void softmax_xent_forward(const T* __restrict__ logits, const long long* __restrict__ target,
                                     T* __restrict__ loss, T* __restrict__ probs, long long N, int C, T smoothing,
                                     long long ignore_index) {
    __shared__ T partials[32];
    const int tid = threadIdx.x, tpr = blockDim.x;
    for (long long row = (long long)blockIdx.x * blockDim.y + threadIdx.y; row < N;
         row += (long long)gridDim.x * blockDim.y) {
        const T* x = logits + row * C;
        T* p = probs + row * C;
        T m = neg_inf<T>();
        for (int j = tid; j < C; j += tpr) m = MaxOp()(m, x[j]);
        m = row_reduce(m, MaxOp(), partials);
        T s = T(0);
        for (int j = tid; j < C; j += tpr) s += mt_exp(x[j] - m);
        s = row_reduce(s, SumOp(), partials);
        const T lse = mt_log(s);
        T sum_logp = T(0);
        for (int j = tid; j < C; j += tpr) {
            T lp = (x[j] - m) - lse;
            p[j] = mt_exp(lp);
            sum_logp += lp;
        }
        if (smoothing != T(0)) sum_logp = row_reduce(sum_logp, SumOp(), partials);
        if (tid == 0) {
            const long long t = target[row];
            T out;
            if (t == ignore_index) {
                out = T(0);
            } else if (t < 0 || t >= C) {
                out = quiet_nan<T>();  // no host sync to raise: poison the loss instead
            } else {
                out = -((x[t] - m) - lse);
                if (smoothing != T(0)) out = (T(1) - smoothing) * out - smoothing / T(C) * sum_logp;
            }
            loss[row] = out;
        }
    }
}

// One block: out[0] = the sum of loss[0..N) (added in double), divided by the number of targets
// that are not ignore_index when `mean` (NaN when all are, as in PyTorch); that count goes to
// *count, for the backward's division.
template <typename T>
__global__ void xent_reduce(const T* __restrict__ loss, const long long* __restrict__ target, long long N,
                            long long ignore_index, int mean, T* __restrict__ out, T* __restrict__ count) {
    __shared__ double sums[32];
    __shared__ long long counts[32];
    double s = 0.0;
    long long k = 0;
    for (long long i = threadIdx.x; i < N; i += blockDim.x) {
        s += (double)loss[i];
        k += target[i] != ignore_index;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        s += __shfl_xor_sync(0xffffffffu, s, off);
        k += __shfl_xor_sync(0xffffffffu, k, off);
    }
    if ((threadIdx.x & 31) == 0) sums[threadIdx.x >> 5] = s, counts[threadIdx.x >> 5] = k;
    __syncthreads();
    if (threadIdx.x != 0) return;
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) s += sums[w], k += counts[w];
    out[0] = mean ? (k ? T(s / (double)k) : quiet_nan<T>()) : T(s);
    count[0] = T(k);
}

// dlogits[i, j] = (p[i, j] - eps/C - (1-eps)[j == t_i]) * grad_loss[i] * (t_i != ignore_index)
// grad_loss is read with an element stride (0 for a broadcast scalar gradient); with `count`
// (xent_reduce's, for a mean) it is divided by that count first (by 1 when it is 0).
template <typename T>
__global__ void softmax_xent_backward(const T* __restrict__ grad_loss, long long grad_stride,
                                      const T* __restrict__ count, const T* __restrict__ probs,
                                      const long long* __restrict__ target, T* __restrict__ dlogits, int C,
                                      T smoothing, long long ignore_index, long long total) {
    const T eps_c = smoothing / T(C);
    const T one_minus = T(1) - smoothing;
    const T divisor = count && count[0] != T(0) ? count[0] : T(1);
    GRID_STRIDE(i, total) {
        long long row = i / C;
        int j = (int)(i - row * C);
        long long t = target[row];
        bool valid = t != ignore_index;
        long long safe_t = valid ? t : 0;
        T g = probs[i] - eps_c;
        if (j == safe_t) g -= one_minus;
        dlogits[i] = g * (grad_loss[row * grad_stride] / divisor * (valid ? T(1) : T(0)));
    }
}

#define MT_INSTANTIATE(T)                                                                                    \
    template __global__ void softmax_xent_forward<T>(const T*, const long long*, T*, T*, long long, int, T,  \
                                                     long long);                                             \
    template __global__ void xent_reduce<T>(const T*, const long long*, long long, long long, int, T*, T*);      \
    template __global__ void softmax_xent_backward<T>(const T*, long long, const T*, const T*, const long long*, \
                                                      T*, int, T, long long, long long);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
