// 2-D convolution as implicit GEMM on the tensor cores, channels-last, 16-bit operands.
//
// Layouts: x (N, H, W, C), the output y (N, OH, OW, O), the weight (O, KH, KW, C),
// all contiguous; the GEMM's reduction index is k = (kh * KW + kw) * C + c, so K = KH*KW*C.
//
//   fprop  y[p][o]  = sum_k  patch(x)[p][k] * w[o][k]      M = N*OH*OW pixels, N = O
//   wgrad  dw[o][k] = sum_p  dy[p][o] * patch(x)[p][k]     M = O, N = K, reduced over pixels
//   (dgrad of a stride-1 convolution is an fprop of dy with the flipped, transposed weight.)
//
// Nothing is built in device memory: each block gathers its tile of the patch matrix
// straight from x into shared memory (16-byte cp.async copies; the padding and the ragged
// edges are zero-filled by the copy), so the im2col columns never exist. CUTLASS's names:
// block tile BM x BN x BK, 8 warps of warp tile WM x WN, mma.sync m16n8k16 instructions
// (float32 accumulators), STAGES-deep cp.async pipeline, operands read with ldmatrix from
// XOR-swizzled shared memory so that neither the copies nor ldmatrix meet bank conflicts.
// The host checks C % 8 == 0 and O % 8 == 0: a 16-byte run of k then lies in one tap.
#include "common.cuh"
#include "tile_copy.cuh"

// BK and STAGES come from the host (NVRTC -D options), which sizes the shared memory to match.
#ifndef IGEMM_BK
#define IGEMM_BK 32
#endif
#ifndef IGEMM_STAGES
#define IGEMM_STAGES 4
#endif
#ifndef IGEMM_FPROP_BN  // the fprop's N tile (output channels): 128, or 64 for narrow layers
#define IGEMM_FPROP_BN 128
#endif

namespace igemm {
constexpr int BM = 128, BN = 128, BK = IGEMM_BK, STAGES = IGEMM_STAGES, THREADS = 256;  // (8 warps)
constexpr int WARPS_N = 4, WM = 64, WN = 32;    // 2 x 4 warps
constexpr int MT = WM / 16, NT = WN / 8;        // m16 and n8 tiles of one warp
constexpr int TILE_BYTES = (BM + BN) * BK * 2;  // one stage of both operands
// fprop: BM x FBN tiles, warps of FWM x 32 (2 x 4 warps for FBN = 128, 4 x 2 for 64)
constexpr int FBN = IGEMM_FPROP_BN, F_WARPS_N = FBN / 32, FWM = BM * F_WARPS_N / 8, FMT = FWM / 16;
constexpr int F_TILE_BYTES = (BM + FBN) * BK * 2;
}  // namespace igemm

template <bool TRANS> __device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], unsigned addr) {
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

// c (16x8, float) += a (16x16) b (16x8)
template <typename T> __device__ __forceinline__ void mma16816(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                                               unsigned b1);
template <> __device__ __forceinline__ void mma16816<bf16_t>(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                                             unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma16816<half_t>(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                                             unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The cp.async pipeline over KT k-tiles: load(stage, kt) copies tile kt into a stage, and
// compute(stage) works on one that has landed; STAGES - 1 tiles are in flight meanwhile.
template <typename Load, typename Compute>
__device__ __forceinline__ void pipelined(int KT, Load load, Compute compute) {
    using namespace igemm;
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < KT) load(s, s);
        copy_commit();
    }
    for (int kt = 0; kt < KT; ++kt) {
        copy_wait<STAGES - 2>();
        __syncthreads();  // tile kt has landed, and every warp is done with the stage refilled next
        if (kt + STAGES - 1 < KT) load((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
        copy_commit();
        compute(kt % STAGES);
    }
    copy_wait<0>();
}

// acc (MT x NT tiles of m16n8) += the warp's A fragments times its B fragments, both given
// as ldmatrix x4 loads: a_load(i, regs) the m16k16 tile i, b_load(j, regs) the n16k16 pair j
template <typename T, int MT, int NT, typename ALoad, typename BLoad>
__device__ __forceinline__ void warp_mma(float (&acc)[MT][NT][4], ALoad a_load, BLoad b_load) {
    unsigned a[MT][4], b[NT][2];
#pragma unroll
    for (int i = 0; i < MT; ++i) a_load(i, a[i]);
#pragma unroll
    for (int j = 0; j < NT / 2; ++j) {
        unsigned r[4];
        b_load(j, r);
        b[2 * j][0] = r[0], b[2 * j][1] = r[1], b[2 * j + 1][0] = r[2], b[2 * j + 1][1] = r[3];
    }
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) mma16816<T>(acc[i][j], a[i], b[j][0], b[j][1]);
}

// y = conv(x, w) (+ bias), one BM x BN tile of (pixels, output channels) per block.
template <typename T>
__global__ void __launch_bounds__(igemm::THREADS) conv_fprop(const T* __restrict__ x, const T* __restrict__ w,
                                                  const float* __restrict__ bias, T* __restrict__ y, int N, int H,
                                                  int W, int C, int O, int KH, int KW, int SH, int SW, int PH, int PW,
                                                  int DH, int DW, int OH, int OW, int YN, int YH, int YW) {
    using namespace igemm;
    extern __shared__ __align__(128) unsigned char smem[];
    const unsigned sbase = smem_address(smem);
    const int M = N * OH * OW, K = KH * KW * C, KT = (K + BK - 1) / BK;
    const int n0 = blockIdx.x * FBN, m0 = blockIdx.y * BM;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int warp_m = warp / F_WARPS_N, warp_n = warp % F_WARPS_N;

    constexpr int CH = BK / 8, RP = THREADS / CH;
    const FpropCopies<T, CH, RP, BM / RP, FBN / RP> copies(x, w, m0, n0, tid, N, H, W, C, O, KH, KW, SH, SW, PH, PW,
                                                           DH, DW, OH, OW);
    auto load_stage = [&](int stage, int kt) {
        const unsigned sa = sbase + stage * F_TILE_BYTES;
        copies.load(sa, sa + BM * BK * 2, kt);
    };

    float acc[FMT][NT][4] = {};
    pipelined(KT, load_stage, [&](int stage) {
        const unsigned sa = sbase + stage * F_TILE_BYTES, sb = sa + BM * BK * 2;
#pragma unroll
        for (int kk = 0; kk < BK / 8; kk += 2)  // the k16 steps, in 16-byte chunks
            warp_mma<T>(
                acc,
                [&](int i, unsigned(&r)[4]) {
                    ldmatrix_x4<false>(r, sa + swizzle<CH>(warp_m * FWM + i * 16 + (lane & 15), kk + (lane >> 4)));
                },
                [&](int j, unsigned(&r)[4]) {
                    const int row = warp_n * WN + j * 16 + ((lane >> 4) << 3) + (lane & 7);
                    ldmatrix_x4<false>(r, sb + swizzle<CH>(row, kk + ((lane >> 3) & 1)));
                });
    });

    // accumulator (i, j) holds rows lane/4 and lane/4 + 8 of its m16 tile, columns 2*(lane%4) + {0, 1}
    long long out[FMT][2];
#pragma unroll
    for (int i = 0; i < FMT; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int m = m0 + warp_m * FWM + i * 16 + (lane >> 2) + 8 * h;
            out[i][h] = m < M ? out_pixel(m, OH * OW, OW, YN, YH, YW) * O : -1;
        }
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        const int col = n0 + warp_n * WN + j * 8 + (lane & 3) * 2;
        if (col >= O) continue;
        const float b0 = bias ? bias[col] : 0.f, b1 = bias ? bias[col + 1] : 0.f;
#pragma unroll
        for (int i = 0; i < FMT; ++i)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                if (out[i][h] >= 0)
                    *reinterpret_cast<unsigned*>(y + out[i][h] + col) =
                        pack2<T>(acc[i][j][2 * h] + b0, acc[i][j][2 * h + 1] + b1);
    }
}

// Partial weight gradients: block (x, y, z) computes the BM x BN tile (output channels, k)
// over the pixel tiles [z * tiles, (z + 1) * tiles) and writes it, in float, to split z of
// `partial` (splits, O, K); conv_wgrad_sum adds the splits in order (deterministic).
// Both operands arrive with the pixel index as rows (dy (P, O), the patches (P, K)), so
// ldmatrix transposes them into the mma fragments.
template <typename T>
__global__ void __launch_bounds__(igemm::THREADS) conv_wgrad(const T* __restrict__ x, const T* __restrict__ dy,
                                                  float* __restrict__ partial, int N, int H, int W, int C, int O,
                                                  int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW,
                                                  int OH, int OW, int tiles) {
    using namespace igemm;
    extern __shared__ __align__(128) unsigned char smem[];
    const unsigned sbase = smem_address(smem);
    const int P = N * OH * OW, K = KH * KW * C, OHW = OH * OW;
    const int k0 = blockIdx.x * BN, o0 = blockIdx.y * BM;
    const int kt0 = blockIdx.z * tiles, KT = min((P + BK - 1) / BK - kt0, tiles);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;

    // this thread copies chunk `cc` (8 channels of dy, 8 values of k) of pixel rows cr + 16 i
    constexpr int PASSES = BK / 16;
    const int cc = tid & 15, cr = tid >> 4;
    const int o = o0 + cc * 8, k = k0 + cc * 8;
    const bool o_ok = o < O, k_ok = k < K;
    const int tap = k / C, c = k - tap * C, kh = tap / KW, kw = tap - kh * KW;
    const int hoff = kh * DH - PH, woff = kw * DW - PW;
    const FastDiv by_ohw(OHW), by_ow(OW);
    auto load_stage = [&](int stage, int kt) {
        const unsigned sa = sbase + stage * TILE_BYTES, sb = sa + BK * BM * 2;
#pragma unroll
        for (int i = 0; i < PASSES; ++i) {
            const int r = cr + 16 * i, p = (kt0 + kt) * BK + r;
            const bool p_ok = p < P;
            copy16(sa + swizzle<16>(r, cc), p_ok && o_ok ? dy + (long long)p * O + o : dy, p_ok && o_ok);
            const int pp = p_ok ? p : 0, n = by_ohw(pp), rem = pp - n * OHW, oh = by_ow(rem), ow = rem - oh * OW;
            const int ih = oh * SH + hoff, iw = ow * SW + woff;
            const bool ok = p_ok && k_ok && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W;
            copy16(sb + swizzle<16>(r, cc), ok ? x + (((long long)n * H + ih) * W + iw) * C + c : x, ok);
        }
    };

    float acc[MT][NT][4] = {};
    const int q = lane >> 3, r8 = lane & 7;
    pipelined(KT, load_stage, [&](int stage) {
        const unsigned sa = sbase + stage * TILE_BYTES, sb = sa + BK * BM * 2;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16)  // the k16 steps over the pixels
            warp_mma<T>(
                acc,
                [&](int i, unsigned(&r)[4]) {  // matrices: (m, k) (m+8, k) (m, k+8) (m+8, k+8)
                    const int m_chunk = (warp_m * WM + i * 16) / 8 + (q & 1);
                    ldmatrix_x4<true>(r, sa + swizzle<16>(kk + (q >> 1) * 8 + r8, m_chunk));
                },
                [&](int j, unsigned(&r)[4]) {  // matrices: (k, n) (k+8, n) (k, n+8) (k+8, n+8)
                    const int n_chunk = (warp_n * WN + j * 16) / 8 + (q >> 1);
                    ldmatrix_x4<true>(r, sb + swizzle<16>(kk + (q & 1) * 8 + r8, n_chunk));
                });
    });

    float* out = partial + (long long)blockIdx.z * O * K;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        const int col = k0 + warp_n * WN + j * 8 + (lane & 3) * 2;
        if (col >= K) continue;
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = o0 + warp_m * WM + i * 16 + (lane >> 2) + 8 * h;
                if (row < O)
                    *reinterpret_cast<float2*>(out + (long long)row * K + col) =
                        make_float2(acc[i][j][2 * h], acc[i][j][2 * h + 1]);
            }
    }
}

// dw = the sum of the splits of `partial` (splits, O, KH*KW, C), written (O, C, KH, KW) when
// `oihw` (the contiguous weight layout) or (O, KH, KW, C) (channels-last) otherwise
template <typename T>
__global__ void conv_wgrad_sum(const float* __restrict__ partial, T* __restrict__ dw, int O, int C, int KHW,
                               int splits, int oihw) {
    const long long size = (long long)O * C * KHW;
    GRID_STRIDE(i, size) {
        long long src = i;  // (o, tap, c)
        if (oihw) {         // i = (o, c, tap)
            const long long o = i / ((long long)C * KHW);
            const int rem = (int)(i - o * C * KHW), c = rem / KHW, tap = rem - c * KHW;
            src = (o * KHW + tap) * C + c;
        }
        float s = 0.f;
        for (int z = 0; z < splits; ++z) s += partial[z * size + src];
        dw[i] = T(s);
    }
}

#define MT_INSTANTIATE(T)                                                                                          \
    template __global__ void conv_fprop<T>(const T*, const T*, const float*, T*, int, int, int, int, int, int, int, \
                                           int, int, int, int, int, int, int, int, int, int, int);                  \
    template __global__ void conv_wgrad<T>(const T*, const T*, float*, int, int, int, int, int, int, int, int, int, \
                                           int, int, int, int, int, int, int);                                      \
    template __global__ void conv_wgrad_sum<T>(const float*, T*, int, int, int, int, int);

MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
