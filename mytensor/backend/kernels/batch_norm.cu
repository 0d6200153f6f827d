// Batch normalisation in training mode over x of shape (N, C, L), contiguous; a
// channels-last input comes as (N*H*W, C, 1), whose passes have `rows` kernels.
// For a 16-bit x the statistics, weight, bias and their gradients are float
// (P = acc_t<T>), so a bfloat16 network keeps float32 parameters.
//
// Each pass is spread over the whole GPU, not one block per channel: a channel's
// N*L values are cut into S shares (grid S x C), and a pass reads 16 bytes per
// thread and step where L allows (`vec`). Forward, three launches:
//   bn_partial_sums   block (s, c) sums d = x - x[c, first] and d*d over its share,
//                     shifted sums that keep float accurate when |mean| >> std;
//   bn_forward_finish one warp per channel: the S partials (added in double) give
//                     mean and invstd = 1/sqrt(var + eps) (var biased), and y's
//                     per-channel scale = invstd * weight and shift = bias - mean * scale;
//                     the running statistics move towards the batch's in the same launch;
//   bn_scale_shift    y = act(x * scale[c] + shift[c]), act a fused activation (ReLU, GELU) or none.
// Backward likewise: partial sums of g and g * (x - mean), then per channel
// dbias = sum g, dweight = invstd * sum g (x - mean) and the coefficients of
// dx = a g + b (x - mean) + d  (a = weight invstd, b = -a invstd dweight / M,
// d = -a dbias / M), then one elementwise pass. With a fused activation, g is first taken
// back through it at z = x * scale + shift, recomputed from x rather than stored.
#include "common.cuh"
#include "activation.cuh"

// Calls f(offset, count) for the chunks of channel c in this block's share (blockIdx.x of
// gridDim.x): `count` (W, or 1 when !vec) elements from flat offset `offset` of x.
template <typename T, typename F>
__device__ __forceinline__ void for_share(int N, int C, long long L, int c, bool vec, F f) {
    const int W = vec ? Pack<T>::W : 1;
    const long long LW = L / W, units = (long long)N * LW;
    const long long per = (units + gridDim.x - 1) / gridDim.x;
    const long long lo = blockIdx.x * per, hi = min(units, lo + per);
    for (long long j = lo + threadIdx.x; j < hi; j += blockDim.x) {
        const long long n = j / LW;
        f(((n * C + c) * L) + (j - n * LW) * W, W);
    }
}

// Loads `count` elements at x + offset (16 bytes at once when count is the pack width)
// and calls g(value) for each, as P.
template <typename T, typename G>
__device__ __forceinline__ void each(const T* __restrict__ x, long long offset, int count, G g) {
    if (count == Pack<T>::W) {
        Pack<T> p = *reinterpret_cast<const Pack<T>*>(x + offset);
#pragma unroll
        for (int k = 0; k < Pack<T>::W; ++k) g(acc_t<T>(p.v[k]));
    } else {
        for (int k = 0; k < count; ++k) g(acc_t<T>(x[offset + k]));
    }
}

// A channel's scale and shift: z = x * scale + shift is the batch norm's output before its
// activation. The forward and the backward both compute them here, so z is the same in both.
template <typename P> __device__ __forceinline__ void bn_affine(P mean, P invstd, P weight, P bias, P& scale, P& shift) {
    scale = invstd * weight;
    shift = bias - mean * scale;
}

// The per-channel terms a backward pass needs to take the gradient back through the fused
// activation: scale and shift of channel c (unused without one). weight/bias may be null.
template <typename P>
__device__ __forceinline__ void act_affine(int act, const P* __restrict__ weight, const P* __restrict__ bias,
                                           const P* __restrict__ mean, const P* __restrict__ invstd, int c, P& scale,
                                           P& shift) {
    scale = shift = P(0);
    if (act != ACT_NONE) bn_affine(mean[c], invstd[c], weight ? weight[c] : P(1), bias ? bias[c] : P(0), scale, shift);
}

// the gradient g at the activation's output, as the gradient at the batch norm's output
template <typename P> __device__ __forceinline__ P through_act(int act, P g, P x, P scale, P shift) {
    return act == ACT_NONE ? g : activate_backward(act, x * scale + shift, g);
}

// The same, for the partial-sums pass: with `kept` (not null) the result is rounded to T and
// stored at kept[i], and the rounded value is what the sums add, so that the dx pass can read
// it back instead of evaluating the activation's slope a second time (worth it for GELU's erf).
template <typename T>
__device__ __forceinline__ acc_t<T> through_act_kept(int act, acc_t<T> g, acc_t<T> x, acc_t<T> scale,
                                                     acc_t<T> shift, T* __restrict__ kept, long long i) {
    acc_t<T> gk = through_act(act, g, x, scale, shift);
    if (kept) {
        const T r = T(gk);
        kept[i] = r;
        gk = acc_t<T>(r);
    }
    return gk;
}

// Sum of a and b over the block into a and b of thread 0. blockDim.x: a multiple of 32, <= 1024.
template <typename P> __device__ __forceinline__ void block_sum2(P& a, P& b) {
    __shared__ P sa[32], sb[32];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        a += __shfl_xor_sync(0xffffffffu, a, off);
        b += __shfl_xor_sync(0xffffffffu, b, off);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sa[warp] = a;
        sb[warp] = b;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x >> 5); ++k) {
            a += sa[k];
            b += sb[k];
        }
    }
}

// partial[(c * S + s) * 2 + {0, 1}] = the block's sums a and b, for block s of channel c's S
template <typename P> __device__ __forceinline__ void store_partials(P* __restrict__ partial, int c, P a, P b) {
    block_sum2(a, b);
    if (threadIdx.x == 0) {
        partial[((long long)c * gridDim.x + blockIdx.x) * 2] = a;
        partial[((long long)c * gridDim.x + blockIdx.x) * 2 + 1] = b;
    }
}

// a and b: channel c's S partial sums added up in double by the 32 lanes of a warp (each
// lane a stride of the shares, then a butterfly), the same result on every lane
template <typename P>
__device__ __forceinline__ void add_partials(const P* __restrict__ partial, int c, int S, double& a, double& b) {
    a = b = 0.0;
    for (int s = threadIdx.x & 31; s < S; s += 32) {
        a += (double)partial[((long long)c * S + s) * 2];
        b += (double)partial[((long long)c * S + s) * 2 + 1];
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        a += __shfl_xor_sync(0xffffffffu, a, off);
        b += __shfl_xor_sync(0xffffffffu, b, off);
    }
}

// partial[(c * S + s) * 2 + {0, 1}] = sums of d and d*d, d = x - x[channel c's first element]
template <typename T>
__global__ void bn_partial_sums(const T* __restrict__ x, acc_t<T>* __restrict__ partial, int N, int C, long long L,
                                int vec) {
    typedef acc_t<T> P;
    const int c = blockIdx.y;
    const P k = x[(long long)c * L];
    P s1 = 0, s2 = 0;
    for_share<T>(N, C, L, c, vec, [&](long long off, int count) {
        each(x, off, count, [&](P v) {
            const P d = v - k;
            s1 += d;
            s2 += d * d;
        });
    });
    store_partials(partial, c, s1, s2);
}

// The same partial sums for x viewed as (R, C) rows (a channels-last (N, H, W, C) input,
// R = N*H*W), C a multiple of the pack width W. A thread owns W neighbouring channels of every
// RB-th row of the block's share (RB = blockDim / (C / W)), so a warp reads whole rows; the
// row lanes are then added in shared memory. f(offset, s1, s2) adds one pack's terms.
template <typename T, typename F>
__device__ __forceinline__ void rows_partial_sums(acc_t<T>* __restrict__ partial, long long R, int C, F f) {
    typedef acc_t<T> P;
    const int W = Pack<T>::W, G = C / W, RB = blockDim.x / G, g = threadIdx.x % G, lane_row = threadIdx.x / G;
    __shared__ P red[2][256 * Pack<T>::W];  // blockDim.x == 256
    P s1[W], s2[W];
#pragma unroll
    for (int k = 0; k < W; ++k) s1[k] = s2[k] = 0;
    const long long per = (R + gridDim.x - 1) / gridDim.x, lo = blockIdx.x * per, hi = min(R, lo + per);
    if (lane_row < RB)
#pragma unroll 4  // loads of four rows in flight, not one
        for (long long r = lo + lane_row; r < hi; r += RB) f(r * C + g * W, s1, s2);
#pragma unroll
    for (int k = 0; k < W; ++k) {
        red[0][threadIdx.x * W + k] = lane_row < RB ? s1[k] : P(0);
        red[1][threadIdx.x * W + k] = lane_row < RB ? s2[k] : P(0);
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {  // entry (lane_row, c) is red[.][lane_row * C + c]
        P a = 0, b = 0;
        for (int j = 0; j < RB; ++j) {
            a += red[0][j * C + c];
            b += red[1][j * C + c];
        }
        partial[((long long)c * gridDim.x + blockIdx.x) * 2] = a;
        partial[((long long)c * gridDim.x + blockIdx.x) * 2 + 1] = b;
    }
}

template <typename T>
__global__ void bn_partial_sums_rows(const T* __restrict__ x, acc_t<T>* __restrict__ partial, long long R, int C) {
    typedef acc_t<T> P;
    const int g = threadIdx.x % (C / Pack<T>::W);
    const Pack<T> first = *reinterpret_cast<const Pack<T>*>(x + g * Pack<T>::W);  // row 0: the shift
    rows_partial_sums<T>(partial, R, C, [&](long long off, P* s1, P* s2) {
        const Pack<T> v = *reinterpret_cast<const Pack<T>*>(x + off);
#pragma unroll
        for (int k = 0; k < Pack<T>::W; ++k) {
            const P d = P(v.v[k]) - P(first.v[k]);
            s1[k] += d;
            s2[k] += d * d;
        }
    });
}

template <typename T>
__global__ void bn_backward_partial_sums_rows(const T* __restrict__ grad, const T* __restrict__ x, int act,
                                              const acc_t<T>* __restrict__ weight, const acc_t<T>* __restrict__ bias,
                                              const acc_t<T>* __restrict__ mean, const acc_t<T>* __restrict__ invstd,
                                              T* __restrict__ kept, acc_t<T>* __restrict__ partial, long long R,
                                              int C) {
    typedef acc_t<T> P;
    constexpr int W = Pack<T>::W;
    const int c0 = (threadIdx.x % (C / W)) * W;
    P mu[W], sc[W], sh[W];
#pragma unroll
    for (int k = 0; k < W; ++k) {
        mu[k] = mean[c0 + k];
        act_affine(act, weight, bias, mean, invstd, c0 + k, sc[k], sh[k]);
    }
    rows_partial_sums<T>(partial, R, C, [&](long long off, P* s1, P* s2) {
        const Pack<T> g = *reinterpret_cast<const Pack<T>*>(grad + off);
        const Pack<T> v = *reinterpret_cast<const Pack<T>*>(x + off);
        Pack<T> out;
#pragma unroll
        for (int k = 0; k < W; ++k) {
            P gk = through_act(act, P(g.v[k]), P(v.v[k]), sc[k], sh[k]);
            if (kept) {
                out.v[k] = T(gk);
                gk = P(out.v[k]);
            }
            s1[k] += gk;
            s2[k] += gk * (P(v.v[k]) - mu[k]);
        }
        if (kept) *reinterpret_cast<Pack<T>*>(kept + off) = out;
    });
}

// weight/bias may be null (1 and 0), running_mean/running_var too (then not updated)
template <typename T>
__global__ void bn_forward_finish(const T* __restrict__ x, const acc_t<T>* __restrict__ partial, int S, int C,
                                  long long L, long long M, const acc_t<T>* __restrict__ weight,
                                  const acc_t<T>* __restrict__ bias, acc_t<T> eps, acc_t<T>* __restrict__ mean_out,
                                  acc_t<T>* __restrict__ invstd_out, acc_t<T>* __restrict__ scale,
                                  acc_t<T>* __restrict__ shift, acc_t<T>* __restrict__ running_mean,
                                  acc_t<T>* __restrict__ running_var, acc_t<T> momentum) {
    typedef acc_t<T> P;
    const int c = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;  // a warp per channel
    if (c >= C) return;
    double s1, s2;
    add_partials(partial, c, S, s1, s2);
    if ((threadIdx.x & 31) != 0) return;
    const double m1 = s1 / (double)M;
    const P mean = P((double)acc_t<T>(x[(long long)c * L]) + m1);
    const P var = P(fmax(s2 / (double)M - m1 * m1, 0.0));
    const P invstd = P(1) / mt_sqrt(var + eps);
    mean_out[c] = mean;
    invstd_out[c] = invstd;
    bn_affine(mean, invstd, weight ? weight[c] : P(1), bias ? bias[c] : P(0), scale[c], shift[c]);
    if (running_mean) {  // the running variance takes the unbiased batch variance, as PyTorch's does
        running_mean[c] = (P(1) - momentum) * running_mean[c] + momentum * mean;
        running_var[c] = (P(1) - momentum) * running_var[c] + momentum * P((double)var * M / (double)(M - 1));
    }
}

// The elementwise passes over x as (R, C) rows (C a multiple of the pack width W): a thread owns
// W neighbouring channels, their per-channel factors in registers, and steps through the rows
// f(offset) of its pack in them, as rows_partial_sums does.
template <typename T, typename F> __device__ __forceinline__ void for_rows(long long R, int C, F f) {
    const int W = Pack<T>::W, G = C / W, RB = blockDim.x / G, lane_row = threadIdx.x / G;
    if (lane_row >= RB) return;
    const long long step = (long long)gridDim.x * RB;
    for (long long r = blockIdx.x * RB + lane_row; r < R; r += step) f(r * C + (threadIdx.x % G) * W);
}

template <typename T>
__global__ void bn_scale_shift_rows(const T* __restrict__ x, const acc_t<T>* __restrict__ scale,
                                    const acc_t<T>* __restrict__ shift, T* __restrict__ y, long long R, int C,
                                    int act) {
    typedef acc_t<T> P;
    constexpr int W = Pack<T>::W;
    const int c0 = (threadIdx.x % (C / W)) * W;
    P a[W], b[W];
#pragma unroll
    for (int k = 0; k < W; ++k) a[k] = scale[c0 + k], b[k] = shift[c0 + k];
    for_rows<T>(R, C, [&](long long off) {
        Pack<T> p = *reinterpret_cast<const Pack<T>*>(x + off);
#pragma unroll
        for (int k = 0; k < W; ++k) p.v[k] = T(activate(act, P(p.v[k]) * a[k] + b[k]));
        *reinterpret_cast<Pack<T>*>(y + off) = p;
    });
}

// y = act(x * scale[c] + shift[c]) over all N*C*L elements
template <typename T>
__global__ void bn_scale_shift(const T* __restrict__ x, const acc_t<T>* __restrict__ scale,
                               const acc_t<T>* __restrict__ shift, T* __restrict__ y, int C, long long L,
                               long long total, int vec, int act) {
    const int W = vec ? Pack<T>::W : 1;
    GRID_STRIDE(j, total / W) {
        const long long i = j * W;
        const int c = (int)((i / L) % C);
        const acc_t<T> a = scale[c], b = shift[c];
        if (vec) {
            Pack<T> p = *reinterpret_cast<const Pack<T>*>(x + i);
#pragma unroll
            for (int k = 0; k < Pack<T>::W; ++k) p.v[k] = T(activate(act, acc_t<T>(p.v[k]) * a + b));
            *reinterpret_cast<Pack<T>*>(y + i) = p;
        } else {
            y[i] = T(activate(act, acc_t<T>(x[i]) * a + b));
        }
    }
}

// partial[(c * S + s) * 2 + {0, 1}] = sums of g and g * (x - mean[c])
template <typename T>
__global__ void bn_backward_partial_sums(const T* __restrict__ grad, const T* __restrict__ x, int act,
                                         const acc_t<T>* __restrict__ weight, const acc_t<T>* __restrict__ bias,
                                         const acc_t<T>* __restrict__ mean, const acc_t<T>* __restrict__ invstd,
                                         T* __restrict__ kept, acc_t<T>* __restrict__ partial, int N, int C,
                                         long long L, int vec) {
    typedef acc_t<T> P;
    const int c = blockIdx.y;
    const P mu = mean[c];
    P sc, sh;
    act_affine(act, weight, bias, mean, invstd, c, sc, sh);
    P s1 = 0, s2 = 0;
    for_share<T>(N, C, L, c, vec, [&](long long off, int count) {
        if (count == Pack<T>::W) {
            const Pack<T> g = *reinterpret_cast<const Pack<T>*>(grad + off);
            const Pack<T> v = *reinterpret_cast<const Pack<T>*>(x + off);
#pragma unroll
            for (int k = 0; k < Pack<T>::W; ++k) {
                const P gk = through_act_kept(act, P(g.v[k]), P(v.v[k]), sc, sh, kept, off + k);
                s1 += gk;
                s2 += gk * (P(v.v[k]) - mu);
            }
        } else {
            for (int k = 0; k < count; ++k) {
                const P gk = through_act_kept(act, P(grad[off + k]), P(x[off + k]), sc, sh, kept, off + k);
                s1 += gk;
                s2 += gk * (P(x[off + k]) - mu);
            }
        }
    });
    store_partials(partial, c, s1, s2);
}

// coef[c] = (a, b, d) of dx = a g + b (x - mean) + d; weight may be null (1)
template <typename T>
__global__ void bn_backward_finish(const acc_t<T>* __restrict__ partial, int S, int C, long long M,
                                   const acc_t<T>* __restrict__ weight, const acc_t<T>* __restrict__ invstd,
                                   acc_t<T>* __restrict__ dweight, acc_t<T>* __restrict__ dbias,
                                   acc_t<T>* __restrict__ coef) {
    typedef acc_t<T> P;
    const int c = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;  // a warp per channel
    if (c >= C) return;
    double s1, s2;
    add_partials(partial, c, S, s1, s2);
    if ((threadIdx.x & 31) != 0) return;
    const P is = invstd[c];
    const P db = P(s1), dw = P(s2) * is, m = P(M);
    const P a = (weight ? weight[c] : P(1)) * is;
    dbias[c] = db;
    dweight[c] = dw;
    coef[3 * c] = a;
    coef[3 * c + 1] = -a * is * dw / m;
    coef[3 * c + 2] = -a * db / m;
}

template <typename T>
__global__ void bn_backward_dx_rows(const T* __restrict__ grad, const T* __restrict__ x, int act,
                                    const acc_t<T>* __restrict__ weight, const acc_t<T>* __restrict__ bias,
                                    const acc_t<T>* __restrict__ mean, const acc_t<T>* __restrict__ invstd,
                                    const acc_t<T>* __restrict__ coef, T* __restrict__ dx, long long R, int C) {
    typedef acc_t<T> P;
    constexpr int W = Pack<T>::W;
    const int c0 = (threadIdx.x % (C / W)) * W;
    P mu[W], a[W], b[W], d[W], sc[W], sh[W];
#pragma unroll
    for (int k = 0; k < W; ++k) {
        mu[k] = mean[c0 + k], a[k] = coef[3 * (c0 + k)], b[k] = coef[3 * (c0 + k) + 1], d[k] = coef[3 * (c0 + k) + 2];
        act_affine(act, weight, bias, mean, invstd, c0 + k, sc[k], sh[k]);
    }
    for_rows<T>(R, C, [&](long long off) {
        const Pack<T> g = *reinterpret_cast<const Pack<T>*>(grad + off);
        Pack<T> v = *reinterpret_cast<const Pack<T>*>(x + off);
#pragma unroll
        for (int k = 0; k < W; ++k) {
            const P xk = P(v.v[k]);
            v.v[k] = T(a[k] * through_act(act, P(g.v[k]), xk, sc[k], sh[k]) + b[k] * (xk - mu[k]) + d[k]);
        }
        *reinterpret_cast<Pack<T>*>(dx + off) = v;
    });
}

template <typename T>
__global__ void bn_backward_dx(const T* __restrict__ grad, const T* __restrict__ x, int act,
                               const acc_t<T>* __restrict__ weight, const acc_t<T>* __restrict__ bias,
                               const acc_t<T>* __restrict__ mean, const acc_t<T>* __restrict__ invstd,
                               const acc_t<T>* __restrict__ coef, T* __restrict__ dx, int C, long long L,
                               long long total, int vec) {
    typedef acc_t<T> P;
    const int W = vec ? Pack<T>::W : 1;
    GRID_STRIDE(j, total / W) {
        const long long i = j * W;
        const int c = (int)((i / L) % C);
        const P mu = mean[c], a = coef[3 * c], b = coef[3 * c + 1], d = coef[3 * c + 2];
        P sc, sh;
        act_affine(act, weight, bias, mean, invstd, c, sc, sh);
        if (vec) {
            Pack<T> g = *reinterpret_cast<const Pack<T>*>(grad + i);
            const Pack<T> v = *reinterpret_cast<const Pack<T>*>(x + i);
#pragma unroll
            for (int k = 0; k < Pack<T>::W; ++k) {
                const P xk = P(v.v[k]);
                g.v[k] = T(a * through_act(act, P(g.v[k]), xk, sc, sh) + b * (xk - mu) + d);
            }
            *reinterpret_cast<Pack<T>*>(dx + i) = g;
        } else {
            dx[i] = T(a * through_act(act, P(grad[i]), P(x[i]), sc, sh) + b * (P(x[i]) - mu) + d);
        }
    }
}

#define MT_INSTANTIATE(T)                                                                                       \
    template __global__ void bn_partial_sums<T>(const T*, acc_t<T>*, int, int, long long, int);                \
    template __global__ void bn_partial_sums_rows<T>(const T*, acc_t<T>*, long long, int);                     \
    template __global__ void bn_backward_partial_sums_rows<T>(const T*, const T*, int, const acc_t<T>*,        \
                                                              const acc_t<T>*, const acc_t<T>*, const acc_t<T>*,\
                                                              T*, acc_t<T>*, long long, int);                  \
    template __global__ void bn_forward_finish<T>(const T*, const acc_t<T>*, int, int, long long, long long,   \
                                                  const acc_t<T>*, const acc_t<T>*, acc_t<T>, acc_t<T>*,       \
                                                  acc_t<T>*, acc_t<T>*, acc_t<T>*, acc_t<T>*, acc_t<T>*,       \
                                                  acc_t<T>);                                                    \
    template __global__ void bn_scale_shift<T>(const T*, const acc_t<T>*, const acc_t<T>*, T*, int, long long, \
                                               long long, int, int);                                            \
    template __global__ void bn_scale_shift_rows<T>(const T*, const acc_t<T>*, const acc_t<T>*, T*, long long, \
                                                    int, int);                                                  \
    template __global__ void bn_backward_dx_rows<T>(const T*, const T*, int, const acc_t<T>*, const acc_t<T>*, \
                                                    const acc_t<T>*, const acc_t<T>*, const acc_t<T>*, T*,      \
                                                    long long, int);                                            \
    template __global__ void bn_backward_partial_sums<T>(const T*, const T*, int, const acc_t<T>*,             \
                                                         const acc_t<T>*, const acc_t<T>*, const acc_t<T>*,     \
                                                         T*, acc_t<T>*, int, int, long long, int);              \
    template __global__ void bn_backward_finish<T>(const acc_t<T>*, int, int, long long, const acc_t<T>*,      \
                                                   const acc_t<T>*, acc_t<T>*, acc_t<T>*, acc_t<T>*);           \
    template __global__ void bn_backward_dx<T>(const T*, const T*, int, const acc_t<T>*, const acc_t<T>*,      \
                                               const acc_t<T>*, const acc_t<T>*, const acc_t<T>*, T*, int,      \
                                               long long, long long, int);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
