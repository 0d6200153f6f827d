// im2col / col2im for 2-D convolution, the whole batch in one launch.
//
// Layout (shared with ArrayBackend): x is (N, C, H, W) contiguous; the columns
// are (C*KH*KW, N*OH*OW) contiguous, row r = (c*KH + ki)*KW + kj and column
// q = (n*OH + oy)*OW + ox, so a convolution is one GEMM with the
// (Cout, C*KH*KW) weight matrix.
#include "common.cuh"

// 2-D grid: blockIdx.y walks the rows r = (c, ki, kj) and the x dimension the
// columns q = (n, oy, ox) of that row. Each thread writes a run of V consecutive
// columns, one 16-byte store when the row length allows (`vec`: L a multiple of
// 16 bytes of T), stepping (n, oy, ox) along without dividing; index arithmetic
// is 32-bit (the host checks that N*OH*OW fits). Entries that read the zero
// padding are 0.
template <int V, typename T>
__device__ __forceinline__ void im2col_run(const T* __restrict__ x, T* __restrict__ out, int q, int c, int C,
                                           int H, int W, int SH, int SW, int hoff, int woff, int OH, int OW) {
    const int OHW = OH * OW;
    int n = q / OHW, rem = q - n * OHW;
    int oy = rem / OW, ox = rem - oy * OW;
    if (V > 1 && SW == 1 && OW % V == 0) {  // the run lies in one output row: one input row, read in order
        Pack<T> p;
        const int h = oy * SH + hoff, w0 = ox + woff;
        const T* src = x + (((long long)n * C + c) * H + h) * W + w0;
        const bool row_in = h >= 0 && h < H;
        if (row_in && w0 >= 0 && w0 + V <= W) {
#pragma unroll
            for (int k = 0; k < V; ++k) p.v[k] = src[k];
        } else {
#pragma unroll
            for (int k = 0; k < V; ++k) p.v[k] = (row_in && w0 + k >= 0 && w0 + k < W) ? src[k] : T(0.0f);
        }
        *reinterpret_cast<Pack<T>*>(out + q) = p;
        return;
    }
    Pack<T> p;
    T* vals = V > 1 ? p.v : out + q;
#pragma unroll
    for (int k = 0; k < V; ++k) {
        const int h = oy * SH + hoff, w = ox * SW + woff;
        vals[k] = (h >= 0 && h < H && w >= 0 && w < W) ? x[(((long long)n * C + c) * H + h) * W + w] : T(0.0f);
        if (++ox == OW) {
            ox = 0;
            if (++oy == OH) {
                oy = 0;
                ++n;
            }
        }
    }
    if (V > 1) *reinterpret_cast<Pack<T>*>(out + q) = p;
}

template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols, int N, int C, int H, int W, int KH, int KW,
                       int SH, int SW, int PH, int PW, int DH, int DW, int OH, int OW, int vec) {
    const int V = vec ? Pack<T>::W : 1;
    const int L = N * OH * OW, R = C * KH * KW, runs = L / V;
    for (int r = blockIdx.y; r < R; r += gridDim.y) {
        const int kj = r % KW, ki = (r / KW) % KH, c = r / (KW * KH);
        const int hoff = ki * DH - PH, woff = kj * DW - PW;
        T* out = cols + (long long)r * L;
        for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < runs; j += blockDim.x * gridDim.x) {
            if (vec)
                im2col_run<Pack<T>::W>(x, out, j * V, c, C, H, W, SH, SW, hoff, woff, OH, OW);
            else
                im2col_run<1>(x, out, j, c, C, H, W, SH, SW, hoff, woff, OH, OW);
        }
    }
}

// The adjoint of im2col as a gather: one thread per input element sums every
// column entry that was read from it (no atomics, deterministic), in the generic
// version's order (ki outer, kj inner); 16-bit types sum in float. 2-D grid:
// blockIdx.y walks the (n, c) planes, the x dimension the H*W elements of one, so
// neighbouring threads read neighbouring columns. Unit strides, the common case,
// skip the divisibility tests.
template <typename T>
__global__ void col2im(const T* __restrict__ cols, T* __restrict__ x, int N, int C, int H, int W, int KH, int KW,
                       int SH, int SW, int PH, int PW, int DH, int DW, int OH, int OW) {
    const int L = N * OH * OW, HW = H * W, NC = N * C;
    const bool unit = SH == 1 && SW == 1;
    for (int plane = blockIdx.y; plane < NC; plane += gridDim.y) {
        const int n = plane / C, c = plane - n * C;
        // row (c, ki, kj), column (n, oy, ox) = colc[(ki*KW + kj)*L + oy*OW + ox]
        const T* colc = cols + (long long)c * KH * KW * L + (long long)n * OH * OW;
        T* xp = x + (long long)plane * HW;
        for (int hw = blockIdx.x * blockDim.x + threadIdx.x; hw < HW; hw += blockDim.x * gridDim.x) {
            const int h = hw / W, w = hw - h * W;
            acc_t<T> acc = 0;
            for (int ki = 0; ki < KH; ++ki) {
                const int hh = h + PH - ki * DH;  // = oy * SH for the output row that read (h, ki)
                if (hh < 0) break;                // decreases with ki
                if (!unit && hh % SH) continue;
                const int oy = unit ? hh : hh / SH;
                if (oy >= OH) continue;
                const T* row = colc + (long long)(ki * KW) * L + oy * OW;
                for (int kj = 0; kj < KW; ++kj) {
                    const int ww = w + PW - kj * DW;
                    if (ww < 0) break;
                    if (!unit && ww % SW) continue;
                    const int ox = unit ? ww : ww / SW;
                    if (ox >= OW) continue;
                    acc += acc_t<T>(row[(long long)kj * L + ox]);
                }
            }
            xp[hw] = T(acc);
        }
    }
}

// out (B, A, L) = x (A, B, L) with the two leading dimensions swapped: the layout change
// between the GEMM's (Cout, N, OH*OW) and the tensors' (N, Cout, OH*OW), both ways. Rows of
// L elements move whole, so reads and writes are contiguous (16 bytes a thread with `vec`).
template <typename T>
__global__ void swap_leading(const T* __restrict__ x, T* __restrict__ out, long long A, long long B, long long L,
                             int vec) {
    const int V = vec ? Pack<T>::W : 1;
    const long long LV = L / V;
    GRID_STRIDE(j, A * B * LV) {
        const long long row = j / LV, k = (j - row * LV) * V;  // row = a * B + b of x
        const long long a = row / B, b = row - a * B;
        const long long src = row * L + k, dst = (b * A + a) * L + k;
        if (vec)
            *reinterpret_cast<Pack<T>*>(out + dst) = *reinterpret_cast<const Pack<T>*>(x + src);
        else
            out[dst] = x[src];
    }
}

#define MT_INSTANTIATE(T)                                                                                 \
    template __global__ void im2col<T>(const T*, T*, int, int, int, int, int, int, int, int, int, int, int, \
                                       int, int, int, int);                                                \
    template __global__ void col2im<T>(const T*, T*, int, int, int, int, int, int, int, int, int, int, int, \
                                       int, int, int);                                                \
    template __global__ void swap_leading<T>(const T*, T*, long long, long long, long long, int);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
