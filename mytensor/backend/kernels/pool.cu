// 2-D max and average pooling, forward and backward, the whole batch per launch.
// x is (N, C, H, W) contiguous, outputs (N, C, OH, OW) contiguous; the `nhwc` kernels
// read and write the channels-last layout.

#include "common.cuh"

// One thread per output. Padding reads as -inf. The winner is the first
// maximum in row-major window order (NumPy's argmax, a NaN wins), and its
// index is h*W + w in the unpadded plane, exactly as ArrayBackend returns it.
template <typename T>
__global__ void max_pool2d_forward(const T* __restrict__ x, T* __restrict__ out, int* __restrict__ argmax,
                                   int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW,
                                   long long total) {
    GRID_STRIDE(i, total) {
        int ox = (int)(i % OW);
        long long t = i / OW;
        int oy = (int)(t % OH);
        long long nc = t / OH;
        const T* plane = x + nc * H * W;
        acc_t<T> best = 0;
        int best_i = 0;
        bool first = true;
        for (int ki = 0; ki < KH; ++ki) {
            int h = oy * SH - PH + ki;
            for (int kj = 0; kj < KW; ++kj) {
                int w = ox * SW - PW + kj;
                acc_t<T> v = (h >= 0 && h < H && w >= 0 && w < W) ? acc_t<T>(plane[h * W + w]) : neg_inf<acc_t<T>>();
                if (first || v > best || (v != v && best == best)) {
                    best = v;
                    best_i = h * W + w;
                    first = false;
                }
            }
        }
        out[i] = T(best);
        argmax[i] = best_i;
    }
}

// Scatter of the output gradient to the winners: windows may overlap, so
// several outputs can add into one input (atomicAdd; dx starts zeroed).
// plane_out = OH*OW outputs per (n, c) plane, plane_in = H*W.
template <typename T>
__global__ void max_pool2d_backward(const T* __restrict__ grad, const int* __restrict__ argmax, T* __restrict__ dx,
                                    long long plane_out, long long plane_in, long long total) {
    GRID_STRIDE(i, total) {
        long long nc = i / plane_out;
        int a = argmax[i];
        if (a >= 0 && a < plane_in) atomic_add(dx + nc * plane_in + a, grad[i]);
    }
}

// V ints of registers to global memory at `to` (aligned to 4 V bytes) in 16-byte stores, and back
template <int V> __device__ __forceinline__ void store_ints(const int (&v)[V], int* __restrict__ to) {
#pragma unroll
    for (int k = 0; k < V; k += 4) {
        if (V % 4 == 0) *reinterpret_cast<int4*>(to + k) = make_int4(v[k], v[k + 1], v[k + 2], v[k + 3]);
        else for (int j = k; j < V && j < k + 4; ++j) to[j] = v[j];
    }
}

template <int V> __device__ __forceinline__ void load_ints(const int* __restrict__ from, int (&v)[V]) {
#pragma unroll
    for (int k = 0; k < V; k += 4) {
        if (V % 4 == 0) {
            const int4 q = *reinterpret_cast<const int4*>(from + k);
            v[k] = q.x, v[k + 1] = q.y, v[k + 2] = q.z, v[k + 3] = q.w;
        } else {
            for (int j = k; j < V && j < k + 4; ++j) v[j] = from[j];
        }
    }
}

// Channels-last max pooling: x (N, H, W, C), out and argmax (N, OH, OW, C). One thread per
// output and run of V channels (a 16-byte load when `vec`: C a multiple of the pack), so
// neighbouring threads read neighbouring channels. Winner and index h*W + w as above.
template <int V, typename T>
__device__ __forceinline__ void max_pool_nhwc_run(const T* __restrict__ x, T* __restrict__ out,
                                                  int* __restrict__ argmax, int i, int C, int H, int W, int KH,
                                                  int KW, int SH, int SW, int PH, int PW, int OH, int OW) {
    const int c = i % C, t = i / C, ox = t % OW, oy = (t / OW) % OH, n = t / (OW * OH);
    const T* img = x + n * H * W * C + c;
    acc_t<T> best[V];
    int best_i[V];
    bool first = true;
    for (int ki = 0; ki < KH; ++ki) {
        const int h = oy * SH - PH + ki;
        for (int kj = 0; kj < KW; ++kj) {
            const int w = ox * SW - PW + kj;
            const bool in = h >= 0 && h < H && w >= 0 && w < W;
            Pack<T> p;
            if (V > 1 && in) p = *reinterpret_cast<const Pack<T>*>(img + (h * W + w) * C);
#pragma unroll
            for (int k = 0; k < V; ++k) {
                const acc_t<T> v = !in ? neg_inf<acc_t<T>>() : acc_t<T>(V > 1 ? p.v[k] : img[(h * W + w) * C]);
                if (first || v > best[k] || (v != v && best[k] == best[k])) {
                    best[k] = v;
                    best_i[k] = h * W + w;
                }
            }
            first = false;
        }
    }
    if (V > 1) {  // 16 bytes of outputs and 32 of indices, each in whole stores
        Pack<T> o;
#pragma unroll
        for (int k = 0; k < V; ++k) o.v[k] = T(best[k]);
        *reinterpret_cast<Pack<T>*>(out + i) = o;
        store_ints(best_i, argmax + i);
    } else {
        out[i] = T(best[0]);
        argmax[i] = best_i[0];
    }
}

// index arithmetic in 32 bits: the host checks that the input has fewer than 2^31 elements
template <typename T>
__global__ void max_pool2d_nhwc_forward(const T* __restrict__ x, T* __restrict__ out, int* __restrict__ argmax,
                                        int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, int OH,
                                        int OW, long long total, int vec) {
    const int V = vec ? Pack<T>::W : 1;
    GRID_STRIDE(j, total / V) {
        if (vec)
            max_pool_nhwc_run<Pack<T>::W>(x, out, argmax, (int)j * V, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
        else
            max_pool_nhwc_run<1>(x, out, argmax, (int)j, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
    }
}

// dx (N, H, W, C), zeroed, += the output gradient at each winner (windows may overlap)
template <typename T>
__global__ void max_pool2d_nhwc_backward(const T* __restrict__ grad, const int* __restrict__ argmax,
                                         T* __restrict__ dx, int C, long long plane_out, long long plane_in,
                                         long long total) {
    GRID_STRIDE(i, total) {
        const long long n = i / (plane_out * C);
        const int a = argmax[i];
        if (a >= 0 && a < plane_in) atomic_add(dx + (n * plane_in + a) * C + i % C, grad[i]);
    }
}

// The same for windows that do not overlap (stride >= kernel), as a gather: one thread per
// input element and run of V channels (16 bytes when `vec`), which takes its window's
// gradient where it won, else 0 (no zeroing pass, no atomics). 32-bit indices, as above.
template <typename T>
__global__ void max_pool2d_nhwc_backward_disjoint(const T* __restrict__ grad, const int* __restrict__ argmax,
                                                  T* __restrict__ dx, int C, int H, int W, int KH, int KW, int SH,
                                                  int SW, int PH, int PW, int OH, int OW, long long total, int vec) {
    const int V = vec ? Pack<T>::W : 1;
    GRID_STRIDE(j, total / V) {
        const int i = (int)j * V, c = i % C, t = i / C, w = t % W, h = (t / W) % H, n = t / (W * H);
        const int oy = (h + PH) / SH, ox = (w + PW) / SW;
        const bool in = oy < OH && ox < OW && h + PH - oy * SH < KH && w + PW - ox * SW < KW;
        const int o = ((n * OH + oy) * OW + ox) * C + c, won = h * W + w;
        if (vec) {
            Pack<T> p;
            int a[Pack<T>::W];
            if (in) {
                p = *reinterpret_cast<const Pack<T>*>(grad + o);
                load_ints(argmax + o, a);
            }
#pragma unroll
            for (int k = 0; k < Pack<T>::W; ++k)
                if (!in || a[k] != won) p.v[k] = T(0.0f);
            *reinterpret_cast<Pack<T>*>(dx + i) = p;
        } else {
            dx[i] = in && argmax[o] == won ? grad[o] : T(0.0f);
        }
    }
}

// number of elements each window divides by
__device__ __forceinline__ int pool_count(int oy, int ox, int H, int W, int KH, int KW, int SH, int SW, int PH,
                                          int PW, int count_include_pad) {
    if (count_include_pad) return KH * KW;
    int h0 = oy * SH - PH, w0 = ox * SW - PW;
    int h1 = min(h0 + KH, H), w1 = min(w0 + KW, W);
    h0 = max(h0, 0);
    w0 = max(w0, 0);
    return (h1 - h0) * (w1 - w0);
}

// One thread per output: window sum (padding counts as 0) / divisor.
template <typename T>
__global__ void avg_pool2d_forward(const T* __restrict__ x, T* __restrict__ out, int H, int W, int KH, int KW,
                                   int SH, int SW, int PH, int PW, int OH, int OW, int count_include_pad,
                                   long long total) {
    GRID_STRIDE(i, total) {
        int ox = (int)(i % OW);
        long long t = i / OW;
        int oy = (int)(t % OH);
        long long nc = t / OH;
        const T* plane = x + nc * H * W;
        acc_t<T> acc = 0;
        for (int ki = 0; ki < KH; ++ki) {
            int h = oy * SH - PH + ki;
            if (h < 0 || h >= H) continue;
            for (int kj = 0; kj < KW; ++kj) {
                int w = ox * SW - PW + kj;
                if (w >= 0 && w < W) acc += plane[h * W + w];
            }
        }
        out[i] = T(acc / acc_t<T>(pool_count(oy, ox, H, W, KH, KW, SH, SW, PH, PW, count_include_pad)));
    }
}

// Gather: one thread per input element adds grad/divisor of every window that covers it (no
// atomics). Those windows are the outputs oy in [ceil((h + PH - KH + 1) / SH), (h + PH) / SH]
// (and likewise ox), found by arithmetic: a global pooling's thread reads one output, not KH*KW.
template <typename T>
__global__ void avg_pool2d_backward(const T* __restrict__ grad, T* __restrict__ dx, int H, int W, int KH, int KW,
                                    int SH, int SW, int PH, int PW, int OH, int OW, int count_include_pad,
                                    long long total) {
    GRID_STRIDE(i, total) {
        int w = (int)(i % W);
        long long t = i / W;
        int h = (int)(t % H);
        long long nc = t / H;
        const T* g = grad + nc * OH * OW;
        const int low_h = h + PH - KH + 1, low_w = w + PW - KW + 1;
        const int oy0 = low_h > 0 ? (low_h + SH - 1) / SH : 0, oy1 = min(OH - 1, (h + PH) / SH);
        const int ox0 = low_w > 0 ? (low_w + SW - 1) / SW : 0, ox1 = min(OW - 1, (w + PW) / SW);
        acc_t<T> acc = 0;
        for (int oy = oy0; oy <= oy1; ++oy)
            for (int ox = ox0; ox <= ox1; ++ox)
                acc += acc_t<T>(g[oy * OW + ox]) /
                       acc_t<T>(pool_count(oy, ox, H, W, KH, KW, SH, SW, PH, PW, count_include_pad));
        dx[i] = T(acc);
    }
}

#define MT_INSTANTIATE(T)                                                                                     \
    template __global__ void max_pool2d_forward<T>(const T*, T*, int*, int, int, int, int, int, int, int, int, \
                                                   int, int, long long);                                      \
    template __global__ void max_pool2d_backward<T>(const T*, const int*, T*, long long, long long, long long); \
    template __global__ void max_pool2d_nhwc_forward<T>(const T*, T*, int*, int, int, int, int, int, int, int,  \
                                                        int, int, int, int, long long, int);                    \
    template __global__ void max_pool2d_nhwc_backward_disjoint<T>(const T*, const int*, T*, int, int, int, int, \
                                                                  int, int, int, int, int, int, int, long long,  \
                                                                  int);                                          \
    template __global__ void max_pool2d_nhwc_backward<T>(const T*, const int*, T*, int, long long, long long,   \
                                                         long long);                                             \
    template __global__ void avg_pool2d_forward<T>(const T*, T*, int, int, int, int, int, int, int, int, int,  \
                                                   int, int, long long);                                      \
    template __global__ void avg_pool2d_backward<T>(const T*, T*, int, int, int, int, int, int, int, int, int, \
                                                    int, int, long long);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
