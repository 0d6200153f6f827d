// 2-D convolution as implicit GEMM on Hopper (sm_90a) with the copies by TMA, its tensor memory
// accelerator: the same products as implicit_gemm_wgmma.cu, for inputs of C % 64 == 0 channels,
// so that a 64-wide k tile is 64 channels of one tap. The host encodes the tensor maps
// (backend/cuda/tensor_maps.py): an im2col map of x, which walks the windows' origins and
// zero-fills the padding, and tiled maps of the weights or of dy. One thread of a ninth warp
// issues every copy of a stage; two warpgroups multiply.
#include "common.cuh"
#include "tile_copy.cuh"
#include "wgmma.cuh"

// The TMA forward's copies of one output tile (m0, n0): its KT k-tiles into the ring of stages at
// positions `first` on (position p in stage p % STAGES, the stage's (p / STAGES)-th filling),
// each stage once its previous filling has been emptied. A k tile is 64 channels of one tap.
__device__ __forceinline__ void tma_fprop_tile_loads(const TensorMap& x_map, const TensorMap& w_map, unsigned full,
                                                     unsigned empty, unsigned sbase, int first, int m0, int n0, int C,
                                                     int KW, int SH, int SW, int PH, int PW, int DH, int DW, int OH,
                                                     int OW, int KT) {
    using namespace wg;
    const int n = m0 / (OH * OW), r = m0 - n * OH * OW, oh = r / OW, ow = r - oh * OW;
    const int h0 = oh * SH - PH, w0 = ow * SW - PW, blocks = C / BK;
    for (int kt = 0, tap = 0, cb = 0; kt < KT; ++kt) {
        const int p = first + kt, s = p % STAGES, kh = tap / KW, kw = tap - kh * KW;
        const unsigned sa = sbase + s * STAGE_BYTES;
        if (p >= STAGES) mbar_wait(empty + 8 * s, (p / STAGES - 1) & 1);
        mbar_arrive_expect(full + 8 * s, STAGE_BYTES);
        tma_load_im2col(sa, &x_map, full + 8 * s, cb * BK, w0, h0, n, kw * DW, kh * DH);
        tma_load_tile(sa + A_BYTES, &w_map, full + 8 * s, kt * BK, n0);
        if (++cb == blocks) cb = 0, ++tap;
    }
}

#ifndef WG_MIN_BLOCKS  // the TMA forward's blocks a multiprocessor (its launch bound)
#define WG_MIN_BLOCKS 1
#endif

// The forward with the copies by TMA, for C % 64 == 0, so that each 64-wide k tile is 64
// channels of one tap: the patch tile is one im2col copy (128 pixels from m0 on, that tap's
// channels), the weight tile one tiled copy ((O, K) rows n0 on, k from kt * 64). Two warpgroups
// multiply (specialized_consume); the ninth warp is the producer, one of its threads issuing
// both copies of each stage. With the addresses off the producer's hands it needs no registers
// to speak of, and small tiles can run two blocks a multiprocessor.
template <typename T>
__global__ void __launch_bounds__(wg::TMA_THREADS, WG_MIN_BLOCKS)
    conv_fprop_tma(const __grid_constant__ TensorMap x_map, const __grid_constant__ TensorMap w_map,
                   const float* __restrict__ bias, T* __restrict__ y, int N, int C, int O, int KH, int KW, int SH,
                   int SW, int PH, int PW, int DH, int DW, int OH, int OW, int YN, int YH, int YW) {
    using namespace wg;
    extern __shared__ unsigned char smem[];
    const unsigned bars = smem_address(smem), full = bars, empty = bars + 8 * STAGES;
    const unsigned sbase = (bars + 16 * STAGES + 1023) & ~1023u;
    const int M = N * OH * OW, KT = KH * KW * (C / BK), n0 = blockIdx.x * BN, m0 = blockIdx.y * BM;
    const int group = threadIdx.x / 128;  // 0 and 1 multiply, 2 (one warp) copies
    specialized_barriers_init(bars, 1);
    if (group == 2) {
        if (threadIdx.x == 256) tma_fprop_tile_loads(x_map, w_map, full, empty, sbase, 0, m0, n0, C, KW, SH, SW, PH,
                                                     PW, DH, DW, OH, OW, KT);
        return;
    }
    float acc[BN / 2];
    specialized_consume(bars, KT, [&](int stage, bool first) {
        fprop_stage_mma<T>(acc, sbase + stage * STAGE_BYTES, group, first);
    });
    fprop_store(acc, bias, y, m0, n0, group, M, O, OH, OW, YN, YH, YW);
}

// The TMA forward as a persistent grid (a block a multiprocessor, taking tiles t = blockIdx.x,
// + gridDim.x, ...; tile t is m tile t / NT, n tile t % NT) in CUTLASS's "ping-pong" schedule:
// the producer warp fills the ring with each of the block's tiles in turn, and consumer
// warpgroup g takes the block's tiles g, g + 2, ..., all 128 rows of each (two m64 halves), so
// that one warpgroup's stores run while the other multiplies. A stage is emptied by the one
// warpgroup that read it. The warpgroups take turns at the ring (turn[g] completes a phase when
// the other has passed the full barriers of its tile): an mbarrier's parity tells its last phase
// from the one before only, so a warpgroup must not wait on a stage two fillings ahead. BN <= 128:
// a warpgroup holds the 128 x BN accumulators (a module built wider traps, and the host never
// launches it so).
template <typename T>
__global__ void __launch_bounds__(wg::TMA_THREADS, 1)
    conv_fprop_tma_pingpong(const __grid_constant__ TensorMap x_map, const __grid_constant__ TensorMap w_map,
                            const float* __restrict__ bias, T* __restrict__ y, int N, int C, int O, int KH, int KW,
                            int SH, int SW, int PH, int PW, int DH, int DW, int OH, int OW, int YN, int YH, int YW) {
#if WG_BN > 128
    __trap();
#else
    using namespace wg;
    extern __shared__ unsigned char smem[];
    const unsigned bars = smem_address(smem), full = bars, empty = bars + 8 * STAGES;
    const unsigned sbase = (bars + 16 * STAGES + 1023) & ~1023u;
    const int M = N * OH * OW, KT = KH * KW * (C / BK), NT = (O + BN - 1) / BN, tiles = NT * ((M + BM - 1) / BM);
    __shared__ unsigned long long turn_bars[2];
    const unsigned turn = smem_address(turn_bars);
    const int group = threadIdx.x / 128;
    if (threadIdx.x < 2) mbar_init(turn + 8 * threadIdx.x, 128);
    specialized_barriers_init(bars, 1, 128);
    if (group == 2) {
        if (threadIdx.x != 256) return;
        for (int t = blockIdx.x, i = 0; t < tiles; t += gridDim.x, ++i)
            tma_fprop_tile_loads(x_map, w_map, full, empty, sbase, i * KT, t / NT * BM, t % NT * BN, C, KW, SH, SW,
                                 PH, PW, DH, DW, OH, OW, KT);
        return;
    }
    for (int t = blockIdx.x + group * gridDim.x, i = group; t < tiles; t += 2 * gridDim.x, i += 2) {
        float acc[2][BN / 2];  // set by the first k-tile's multiply
        if (i > 0) mbar_wait(turn + 8 * group, ((i - 1) / 2) & 1);  // tile i - 1 is past its waits
        for (int kt = 0; kt < KT; ++kt) {
            const int p = i * KT + kt, s = p % STAGES;
            mbar_wait(full + 8 * s, (p / STAGES) & 1);
            wgmma_fence();
            fprop_stage_mma<T>(acc[0], sbase + s * STAGE_BYTES, 0, kt == 0);
            fprop_stage_mma<T>(acc[1], sbase + s * STAGE_BYTES, 1, kt == 0);
            wgmma_commit();
            wgmma_wait<1>();  // the multiply of k-tile kt - 1 is done: its stage can be refilled
            if (kt > 0) mbar_arrive(empty + 8 * ((p - 1) % STAGES));
        }
        mbar_arrive(turn + 8 * (1 - group));
        wgmma_wait<0>();
        mbar_arrive(empty + 8 * ((i * KT + KT - 1) % STAGES));
#pragma unroll
        for (int h = 0; h < 2; ++h) fprop_store(acc[h], bias, y, t / NT * BM, t % NT * BN, h, M, O, OH, OW, YN, YH, YW);
    }
#endif
}

// ... with the copies by TMA, for C % 64 == 0: a stage is the dy tile as two tiled copies (64
// pixels by 64 output channels each) and, for each 64-wide block of k (one tap's 64 channels), an
// im2col copy of the same 64 pixels; blocks past K are not copied (their columns are not stored).
// Two warpgroups multiply (specialized_consume), one thread of a ninth warp copies.
template <typename T>
__global__ void __launch_bounds__(wg::TMA_THREADS, WG_MIN_BLOCKS)
    conv_wgrad_tma(const __grid_constant__ TensorMap x_map, const __grid_constant__ TensorMap dy_map,
                   float* __restrict__ partial, int N, int C, int O, int KH, int KW, int SH, int SW, int PH, int PW,
                   int DH, int DW, int OH, int OW, int tiles) {
    using namespace wg;
    constexpr int BLOCK = BK * ROW;
    extern __shared__ unsigned char smem[];
    const unsigned bars = smem_address(smem), full = bars, empty = bars + 8 * STAGES;
    const unsigned sbase = (bars + 16 * STAGES + 1023) & ~1023u;
    const int K = KH * KW * C, k0 = blockIdx.x * BN, o0 = blockIdx.y * BM, kt0 = blockIdx.z * tiles;
    const int KT = min((N * OH * OW + BK - 1) / BK - kt0, tiles), group = threadIdx.x / 128;
    specialized_barriers_init(bars, 1);
    if (group == 2) {
        if (threadIdx.x != 256) return;
        const int blocks = min(BN / BK, (K - k0) / BK);
        for (int kt = 0; kt < KT; ++kt) {
            const int s = kt % STAGES, p0 = (kt0 + kt) * BK, n = p0 / (OH * OW), r = p0 - n * OH * OW, oh = r / OW;
            const int h0 = oh * SH - PH, w0 = (r - oh * OW) * SW - PW;
            const unsigned sa = sbase + s * STAGE_BYTES, bar = full + 8 * s;
            if (kt >= STAGES) mbar_wait(empty + 8 * s, (kt / STAGES - 1) & 1);
            mbar_arrive_expect(bar, A_BYTES + blocks * BLOCK);
            tma_load_tile(sa, &dy_map, bar, o0, p0);
            tma_load_tile(sa + BLOCK, &dy_map, bar, o0 + BK, p0);
            for (int j = 0; j < blocks; ++j) {
                const int k = k0 + j * BK, tap = k / C, kh = tap / KW, kw = tap - kh * KW;
                tma_load_im2col(sa + A_BYTES + j * BLOCK, &x_map, bar, k - tap * C, w0, h0, n, kw * DW, kh * DH);
            }
        }
        return;
    }
    float acc[BN / 2];
    specialized_consume(bars, KT, [&](int stage, bool first) {
        wgrad_stage_mma<T>(acc, sbase + stage * STAGE_BYTES, group, first);
    });
    wgrad_store(acc, partial + (long long)blockIdx.z * O * K, o0, k0, group, O, K);
}

#define MT_INSTANTIATE(T)                                                                                       \
    template __global__ void conv_fprop_tma<T>(const __grid_constant__ TensorMap, const __grid_constant__ TensorMap, \
        const float*, T*, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int);    \
    template __global__ void conv_fprop_tma_pingpong<T>(const __grid_constant__ TensorMap,                     \
        const __grid_constant__ TensorMap, const float*, T*, int, int, int, int, int, int, int, int, int, int, int,  \
        int, int, int, int, int);                                                                                \
    template __global__ void conv_wgrad_tma<T>(const __grid_constant__ TensorMap, const __grid_constant__ TensorMap, \
        float*, int, int, int, int, int, int, int, int, int, int, int, int, int, int);

MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
