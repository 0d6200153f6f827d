// What the tensor-core kernels share: shared-memory addresses, 16-byte cp.async copies
// (zero-filling what lies outside the source), the XOR swizzle of their tiles and the
// packing of two results into one 32-bit store.
#pragma once

__device__ __forceinline__ unsigned smem_address(const void* p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// 16 bytes global -> shared, or 16 zero bytes when !valid (the source is then not read)
__device__ __forceinline__ void copy16(unsigned dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void copy_commit() { asm volatile("cp.async.commit_group;"); }
template <int N> __device__ __forceinline__ void copy_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

// Shared-memory byte offset of 16-byte chunk `chunk` of row `row`, rows of CHUNKS chunks: the
// chunk is XORed with the row (bits 1-2 for rows of 4 chunks, two rows to a 128-byte line;
// bits 0-2 for longer rows), so the 8 rows an ldmatrix reads, and the rows a warp's copies
// write, fall in 8 different bank groups. For rows of 8 chunks (128 bytes) this is the
// tensor cores' own 128-byte swizzle, which wgmma reads.
template <int CHUNKS> __device__ __forceinline__ int swizzle(int row, int chunk) {
    if (CHUNKS == 4) return row * 64 + ((chunk ^ (row >> 1)) & 3) * 16;
    return row * CHUNKS * 16 + (chunk ^ (row & 7)) * 16;
}

// x / d for 0 <= x < 2^31 by a multiply and a shift instead of a division (Granlund and Montgomery's
// magic number, set up once): the gathers decode pixel indices this way in their inner loops.
struct FastDiv {
    unsigned d, magic, shift;
    __device__ __forceinline__ explicit FastDiv(int divisor) {
        d = divisor;
        shift = 32 - __clz((int)d - 1);  // ceil(log2 d)
        magic = (unsigned)((((1ull << shift) - d) << 32) / d + 1);
    }
    __device__ __forceinline__ int operator()(int x) const {
        return (int)((__umulhi((unsigned)x, magic) + (unsigned)x) >> shift);
    }
};

// Where output pixel m = (n, a, b) of the (N, OH, OW) grid a forward computes goes: pixel
// n YN + a YH + b YW of y. A dense output has (YN, YH, YW) = (OH OW, OW, 1); the input gradient of
// a strided convolution writes each of its sub-grids (every SH-th row, every SW-th column of a
// larger array) this way.
__device__ __forceinline__ long long out_pixel(int m, int OHW, int OW, int YN, int YH, int YW) {
    const int n = m / OHW, r = m - n * OHW, a = r / OW;
    return (long long)n * YN + (long long)a * YH + (long long)(r - a * OW) * YW;
}

template <typename T> __device__ __forceinline__ unsigned pack2(float a, float b) {
    return (unsigned)T(a).bits | ((unsigned)T(b).bits << 16);
}

// The cp.async copies of one stage of a convolution's forward GEMM (y = patch(x) w^T, see
// implicit_gemm.cu): this thread's chunk `cc` (8 values of k, one tap's channels) of rows
// row0 + STEP * i of the patch tile (A_PASSES rows: pixels m0 + row) and of the weight tile
// (B_PASSES rows: output channels n0 + row), rows of CH chunks in swizzle<CH>, from `threads`
// threads. The pixel of each patch row is decoded once, here (offsets fit in 32 bits: the host
// checks); rows past M or O, the padding and k past K read zeros.
template <typename T, int CH, int STEP, int A_PASSES, int B_PASSES> struct FpropCopies {
    const T* x;
    const T* w;
    int H, W, C, O, KW, DH, DW, K, cc, row0, n0;
    int a_base[A_PASSES], a_h[A_PASSES], a_w[A_PASSES];

    __device__ __forceinline__ FpropCopies(const T* x_, const T* w_, int m0, int n0_, int tid, int N, int H_, int W_,
                                           int C_, int O_, int KH, int KW_, int SH, int SW, int PH, int PW, int DH_,
                                           int DW_, int OH, int OW)
        : x(x_), w(w_), H(H_), W(W_), C(C_), O(O_), KW(KW_), DH(DH_), DW(DW_), K(KH * KW_ * C_), cc(tid % CH),
          row0(tid / CH), n0(n0_) {
        const int M = N * OH * OW;
#pragma unroll
        for (int i = 0; i < A_PASSES; ++i) {
            const int m = m0 + row0 + STEP * i;
            const int mm = m < M ? m : 0, n = mm / (OH * OW), r = mm - n * OH * OW, oh = r / OW, ow = r - oh * OW;
            a_base[i] = n * H * W * C;
            a_h[i] = m < M ? oh * SH - PH : -(1 << 28);  // a row past M reads only padding
            a_w[i] = ow * SW - PW;
        }
    }

    // k-tile kt into the tiles at shared addresses sa (patches) and sb (weights)
    __device__ __forceinline__ void load(unsigned sa, unsigned sb, int kt) const {
        const int k = kt * CH * 8 + cc * 8, tap = k / C, c = k - tap * C, kh = tap / KW, kw = tap - kh * KW;
        const bool k_ok = k < K;
#pragma unroll
        for (int i = 0; i < A_PASSES; ++i) {
            const int ih = a_h[i] + kh * DH, iw = a_w[i] + kw * DW;
            const bool ok = k_ok && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W;
            copy16(sa + swizzle<CH>(row0 + STEP * i, cc), x + (ok ? a_base[i] + (ih * W + iw) * C + c : 0), ok);
        }
#pragma unroll
        for (int i = 0; i < B_PASSES; ++i) {
            const int o = n0 + row0 + STEP * i;
            const bool ok = k_ok && o < O;
            copy16(sb + swizzle<CH>(row0 + STEP * i, cc), w + (ok ? (long long)o * K + k : 0), ok);
        }
    }
};
