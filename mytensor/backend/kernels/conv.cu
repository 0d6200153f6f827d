// im2col / col2im for 2-D convolution, the whole batch in one launch.
//
#include "common.cuh"

// Layout (shared with ArrayBackend): x is (N, C, H, W) contiguous; the columns
// are (C*KH*KW, N*OH*OW) contiguous, row r = (c*KH + ki)*KW + kj and column
// q = (n*OH + oy)*OW + ox, so a convolution is one GEMM with the
// (Cout, C*KH*KW) weight matrix.

// 2-D grid: blockIdx.y walks the rows r = (c, ki, kj) and the x dimension the
// columns q = (n, oy, ox) of that row, so writes are coalesced along q and
// the per-element index arithmetic is 32-bit (the host checks that N*OH*OW
// fits). Entries that read the zero padding are 0.
template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols, int N, int C, int H, int W, int KH, int KW,
                       int SH, int SW, int PH, int PW, int DH, int DW, int OH, int OW) {
    const int L = N * OH * OW, OHW = OH * OW, R = C * KH * KW;
    for (int r = blockIdx.y; r < R; r += gridDim.y) {
        const int kj = r % KW, ki = (r / KW) % KH, c = r / (KW * KH);
        const int hoff = ki * DH - PH, woff = kj * DW - PW;
        T* out = cols + (long long)r * L;
        for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < L; q += blockDim.x * gridDim.x) {
            const int n = q / OHW, rem = q - n * OHW;
            const int oy = rem / OW, ox = rem - oy * OW;
            const int h = oy * SH + hoff, w = ox * SW + woff;
            T v = T(0);
            if (h >= 0 && h < H && w >= 0 && w < W) v = x[(((long long)n * C + c) * H + h) * W + w];
            out[q] = v;
        }
    }
}

// The adjoint of im2col as a gather: one thread per input element sums every
// column entry that was read from it (no atomics, deterministic). The order
// of the sum (ki outer, kj inner) is the generic version's; 16-bit types sum in float. 2-D grid:
// blockIdx.y walks the (n, c) planes, the x dimension the H*W elements of one.
template <typename T>
__global__ void col2im(const T* __restrict__ cols, T* __restrict__ x, int N, int C, int H, int W, int KH, int KW,
                       int SH, int SW, int PH, int PW, int DH, int DW, int OH, int OW) {
    const int L = N * OH * OW, HW = H * W, NC = N * C;
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
                if (hh % SH) continue;
                const int oy = hh / SH;
                if (oy >= OH) continue;
                for (int kj = 0; kj < KW; ++kj) {
                    const int ww = w + PW - kj * DW;
                    if (ww < 0) break;
                    if (ww % SW) continue;
                    const int ox = ww / SW;
                    if (ox >= OW) continue;
                    acc += colc[(long long)(ki * KW + kj) * L + oy * OW + ox];
                }
            }
            xp[hw] = T(acc);
        }
    }
}

#define MT_INSTANTIATE(T)                                                                                 \
    template __global__ void im2col<T>(const T*, T*, int, int, int, int, int, int, int, int, int, int, int, \
                                       int, int, int);                                                     \
    template __global__ void col2im<T>(const T*, T*, int, int, int, int, int, int, int, int, int, int, int, \
                                       int, int, int);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
