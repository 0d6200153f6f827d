// 2-D convolution as implicit GEMM on Hopper's warpgroup tensor-core instructions (wgmma,
// sm_90a), channels-last, 16-bit operands: the same products as implicit_gemm.cu,
//
//   fprop  y[p][o]  = sum_k  patch(x)[p][k] * w[o][k]      M = N*OH*OW pixels, N = O
//   wgrad  dw[o][k] = sum_p  dy[p][o] * patch(x)[p][k]     M = O, N = K, reduced over pixels
//
// with k = (kh * KW + kw) * C + c. A block of 256 threads (two warpgroups) gathers its tiles
// into shared memory with cp.async exactly as the mma.sync kernels do (the im2col columns never
// exist), in rows of 64 16-bit values laid out in the tensor cores' 128-byte swizzle; each
// warpgroup then multiplies its 64 rows of the A tile by the whole B tile with wgmma, which
// reads both operands straight from shared memory through matrix descriptors and accumulates
// in registers, asynchronously: the copies of later tiles are issued while it runs.
// The host checks C % 8 == 0 and O % 8 == 0.
#include "common.cuh"
#include "tile_copy.cuh"

#ifndef WG_BN  // the N tile: 64, 128 or 256
#define WG_BN 128
#endif
#ifndef WG_STAGES
#define WG_STAGES 4
#endif

namespace wg {
constexpr int BM = 128, BN = WG_BN, BK = 64, STAGES = WG_STAGES, THREADS = 256, SPECIALIZED_THREADS = 384,
              TMA_THREADS = 288;
constexpr int A_BYTES = BM * BK * 2, STAGE_BYTES = (BM + BN) * BK * 2;
constexpr int ROW = BK * 2, ATOM = 8 * ROW;  // a 128-byte row of the tile, and 8 of them
}  // namespace wg

// The matrix descriptor wgmma reads a shared-memory operand through: the start address, the
// byte offset between 64-wide blocks of the leading dimension (MN-major operands), the byte
// offset between groups of 8 rows, and the 128-byte swizzle (mode 1, bits 62-63).
__device__ __forceinline__ unsigned long long matrix_desc(unsigned addr, unsigned leading, unsigned stride) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | (unsigned long long)((leading >> 4) & 0x3FFF) << 16 |
           (unsigned long long)((stride >> 4) & 0x3FFF) << 32 | 1ull << 62;
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// what cp.async wrote (the generic proxy) becomes visible to wgmma (the async proxy)
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// d (64 x N, float, spread over the warpgroup) += A (64 x 16) B (16 x N), both from shared
// memory, or d = A B when !accumulate; TA / TB say the operand is MN-major (transposed) rather
// than K-major.
#define WG_REGS64  /* the accumulators, then the operands after them */ \
    "{" "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" "}, %32, %33, p, 1, 1, %35, %36;"
#define WG_SCALE64 "%34"
#define WG_REGS128  /* the accumulators, then the operands after them */ \
    "{" "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" "}, %64, %65, p, 1, 1, %67, %68;"
#define WG_SCALE128 "%66"
#define WG_REGS256  /* the accumulators, then the operands after them */ \
    "{" "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
    "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
    "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
    "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
    "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127" "}, %128, %129, p, 1, 1, %131, %132;"
#define WG_SCALE256 "%130"
#define WG_F4(d, i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define WG_F16(d, i) WG_F4(d, i), WG_F4(d, i + 4), WG_F4(d, i + 8), WG_F4(d, i + 12)
#define WG_F64(d, i) WG_F16(d, i), WG_F16(d, i + 16), WG_F16(d, i + 32), WG_F16(d, i + 48)
#define WG_OPS64(d) WG_F16(d, 0), WG_F16(d, 16)
#define WG_OPS128(d) WG_F64(d, 0)
#define WG_OPS256(d) WG_F64(d, 0), WG_F64(d, 64)
#define WG_MMA(N, T, TY)                                                                                         \
    template <int TA, int TB>                                                                                    \
    __device__ __forceinline__ void wgmma(float (&d)[N / 2], unsigned long long a, unsigned long long b, T*,    \
                                          int accumulate = 1) {                                                  \
        asm volatile("{ .reg .pred p; setp.ne.b32 p, " WG_SCALE##N ", 0;\n"                                     \
                     "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " WG_REGS##N "}"             \
                     : WG_OPS##N(d)                                                                              \
                     : "l"(a), "l"(b), "r"(accumulate), "n"(TA), "n"(TB));                                     \
    }
WG_MMA(64, bf16_t, "bf16")
WG_MMA(128, bf16_t, "bf16")
WG_MMA(256, bf16_t, "bf16")
WG_MMA(64, half_t, "f16")
WG_MMA(128, half_t, "f16")
WG_MMA(256, half_t, "f16")

// The pipeline over KT k-tiles: load(stage, kt) copies tile kt into a stage, mma(stage, first) issues
// the wgmma of one that has landed. STAGES - 2 tiles are in flight behind the one multiplied and
// one multiply is left running while the next tile's copies are issued, so a stage is refilled
// only two tiles after its multiply was issued, when every warpgroup has waited for it.
template <typename Load, typename Mma>
__device__ __forceinline__ void wgmma_pipelined(int KT, Load load, Mma mma) {
    using namespace wg;
#pragma unroll
    for (int s = 0; s < STAGES - 2; ++s) {
        if (s < KT) load(s, s);
        copy_commit();
    }
    for (int kt = 0; kt < KT; ++kt) {
        copy_wait<STAGES - 3>();
        fence_async_shared();
        __syncthreads();  // tile kt has landed; every warpgroup is done with tile kt - 2's stage
        wgmma_fence();
        mma(kt % STAGES, kt == 0);
        wgmma_commit();
        if (kt + STAGES - 2 < KT) load((kt + STAGES - 2) % STAGES, kt + STAGES - 2);
        copy_commit();
        wgmma_wait<1>();
    }
    wgmma_wait<0>();
}

// mbarriers in shared memory (8 bytes each): a phase completes when `count` arrivals are in
__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {  // until phase `parity` completed
    asm volatile("{ .reg .pred done;\n"
                 "WAIT: mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra WAIT; }" ::"r"(bar), "r"(parity) : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned bar) {
    asm volatile("{ .reg .b64 state; mbarrier.arrive.shared::cta.b64 state, [%0]; }" ::"r"(bar) : "memory");
}
// an arrival on `bar` made once every cp.async this thread issued so far has landed
__device__ __forceinline__ void copies_arrive(unsigned bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(bar) : "memory");
}

// TMA, Hopper's tensor memory accelerator: one thread asks the copy engine for a whole tile,
// described by a 128-byte tensor map the host encodes once (tensor_maps.py); the engine computes
// every address, zero-fills what lies outside the tensor, writes the tile in the 128-byte swizzle
// and counts the bytes that landed on an mbarrier.
struct alignas(64) TensorMap {
    unsigned long long words[16];
};

// one arrival on `bar`, whose phase then also waits for `bytes` bytes of copies
__device__ __forceinline__ void mbar_arrive_expect(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
// the box of a 2-D tiled map at element coordinates (c0, c1), innermost first
__device__ __forceinline__ void tma_load_tile(unsigned dst, const TensorMap* map, unsigned bar, int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4}], [%2];" ::"r"(dst), "l"(map), "r"(bar), "r"(c0), "r"(c1)
                 : "memory");
}
// An im2col map over an NHWC tensor: its pixels-per-column pixels, walked from input pixel
// (w, h) of image n through the map's box of window origins (W first, then H, then the next
// image, by the convolution's strides), each as its channels c on, read at tap offset (dw, dh)
// from the origin: one tap's slice of a tile of patch rows.
__device__ __forceinline__ void tma_load_im2col(unsigned dst, const TensorMap* map, unsigned bar, int c, int w, int h,
                                                int n, unsigned short dw, unsigned short dh) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4, %5, %6}], [%2], {%7, %8};" ::"r"(dst), "l"(map), "r"(bar), "r"(c), "r"(w),
                 "r"(h), "r"(n), "h"(dw), "h"(dh)
                 : "memory");
}

// The warp-specialized pipeline over KT k-tiles, for blocks of three warpgroups: the first (the
// producer) only copies, the other two (the consumers) only multiply. Stage s has two mbarriers
// at the shared address `bars`: full[s] completes when the producer's copies into it have landed,
// empty[s] when the consumers' multiply that read it is done. No barrier of the whole block
// stands between the copies and the multiplies.
// full[s] counts `producers` arrivals (the producer's 128 threads, or the one thread issuing TMA),
// empty[s] `consumers` (both consumer warpgroups, or the one that read the stage).
__device__ __forceinline__ void specialized_barriers_init(unsigned bars, unsigned producers = 128,
                                                          unsigned consumers = 256) {
    using namespace wg;
    if (threadIdx.x < STAGES) {
        mbar_init(bars + 8 * threadIdx.x, producers);
        mbar_init(bars + 8 * (STAGES + threadIdx.x), consumers);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");  // seen by the copy engine too
    __syncthreads();
}

// The producer: load(stage, kt) copies tile kt into a stage once the consumers have emptied it.
template <typename Load> __device__ __forceinline__ void specialized_produce(unsigned bars, int KT, Load load) {
    using namespace wg;
    const unsigned full = bars, empty = bars + 8 * STAGES;
    for (int kt = 0; kt < KT; ++kt) {
        const int s = kt % STAGES;
        if (kt >= STAGES) mbar_wait(empty + 8 * s, (kt / STAGES - 1) & 1);
        load(s, kt);
        copies_arrive(full + 8 * s);
    }
    copy_wait<0>();
}

// A consumer: mma(stage, first) issues the multiply of each full stage (`first` for the first, which
// overwrites the accumulators: zeroing them beforehand would serialize the wgmma pipeline); one
// multiply stays in flight.
template <typename Mma> __device__ __forceinline__ void specialized_consume(unsigned bars, int KT, Mma mma) {
    using namespace wg;
    const unsigned full = bars, empty = bars + 8 * STAGES;
    for (int kt = 0; kt < KT; ++kt) {
        const int s = kt % STAGES;
        mbar_wait(full + 8 * s, (kt / STAGES) & 1);
        fence_async_shared();
        wgmma_fence();
        mma(s, kt == 0);
        wgmma_commit();
        wgmma_wait<1>();  // the multiply of tile kt - 1 is done: its stage can be refilled
        if (kt > 0) mbar_arrive(empty + 8 * ((kt - 1) % STAGES));
    }
    wgmma_wait<0>();
}

// load(stage, kt) for the pipelines: tile kt of both operands by `copies` into the stage's two
// tiles (the A tile first), stages of STAGE_BYTES from sbase on
template <typename Copies> __device__ __forceinline__ auto stage_loads(const Copies& copies, unsigned sbase) {
    return [&copies, sbase](int stage, int kt) {
        copies.load(sbase + stage * wg::STAGE_BYTES, sbase + stage * wg::STAGE_BYTES + wg::A_BYTES, kt);
    };
}

// One product by a block of three warpgroups: the producer builds its copies (make_copies(), for
// 128 threads) and fills the stages (specialized_produce); each consumer runs mma(stage address,
// group, first) on the full ones (specialized_consume). Returns this thread's consumer group, or -1 for
// the producer, whose work is then done.
template <typename MakeCopies, typename Mma>
__device__ __forceinline__ int specialized_product(unsigned bars, unsigned sbase, int KT, MakeCopies make_copies,
                                                   Mma mma) {
    using namespace wg;
    const int group = threadIdx.x / 128 - 1;
    specialized_barriers_init(bars);
    if (group < 0) {
        const auto copies = make_copies();
        specialized_produce(bars, KT, stage_loads(copies, sbase));
    } else {
        specialized_consume(bars, KT,
                            [&](int stage, bool first) { mma(sbase + stage * STAGE_BYTES, group, first); });
    }
    return group;
}

// The forward's multiply of one stage by warpgroup `group`: its 64 rows of the patch tile by the
// weight tile, both K-major (rows of 64 consecutive k, as x and w hold them), in k16 steps of 32
// bytes along the swizzled rows; `first` overwrites acc instead of adding to it.
template <typename T> __device__ __forceinline__ void fprop_stage_mma(float (&acc)[wg::BN / 2], unsigned stage_base,
                                                                      int group, bool first = false) {
    using namespace wg;
    const unsigned sa = stage_base + group * 64 * ROW, sb = stage_base + A_BYTES;
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk)
        wgmma<0, 0>(acc, matrix_desc(sa + kk * 32, 16, ATOM), matrix_desc(sb + kk * 32, 16, ATOM), (T*)nullptr,
                    kk > 0 || !first);
}

// y[row][col] = acc (+ bias) for warpgroup `group`'s 64 rows of the tile at (m0, n0), row m at
// out_pixel(m): accumulator (4 j + 2 h + e) holds row 16 * warp + lane / 4 + 8 h, column
// 8 j + 2 (lane % 4) + e
template <typename T>
__device__ __forceinline__ void fprop_store(const float (&acc)[wg::BN / 2], const float* __restrict__ bias,
                                            T* __restrict__ y, int m0, int n0, int group, int M, int O, int OH,
                                            int OW, int YN, int YH, int YW) {
    const int lane = threadIdx.x & 31, row = m0 + group * 64 + ((threadIdx.x >> 5) & 3) * 16 + (lane >> 2);
    long long out[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) out[h] = row + 8 * h < M ? out_pixel(row + 8 * h, OH * OW, OW, YN, YH, YW) * O : -1;
#pragma unroll
    for (int j = 0; j < wg::BN / 8; ++j) {
        const int col = n0 + j * 8 + (lane & 3) * 2;
        if (col >= O) continue;
        const float b0 = bias ? bias[col] : 0.f, b1 = bias ? bias[col + 1] : 0.f;
#pragma unroll
        for (int h = 0; h < 2; ++h)
            if (out[h] >= 0)
                *reinterpret_cast<unsigned*>(y + out[h] + col) =
                    pack2<T>(acc[4 * j + 2 * h] + b0, acc[4 * j + 2 * h + 1] + b1);
    }
}

#define FPROP_PARAMS(T)                                                                                          \
    const T *__restrict__ x, const T *__restrict__ w, const float *__restrict__ bias, T *__restrict__ y, int N, \
        int H, int W, int C, int O, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW, int OH, int OW, \
        int YN, int YH, int YW
#define FPROP_COPIES(threads)                                                          \
    FpropCopies<T, 8, threads / 8, BM * 8 / threads, BN * 8 / threads>(x, w, m0, n0, tid, N, H, W, C, O, KH, KW, \
                                                                       SH, SW, PH, PW, DH, DW, OH, OW)

// y = conv(x, w) (+ bias), one BM x BN tile of (pixels, output channels) per block of two
// warpgroups, which copy and multiply in turn (wgmma_pipelined); small enough for two blocks to
// share a multiprocessor, which suits short reductions.
template <typename T>
__global__ void __launch_bounds__(wg::THREADS) conv_fprop_wgmma(FPROP_PARAMS(T)) {
    using namespace wg;
    extern __shared__ unsigned char smem[];
    const unsigned sbase = (smem_address(smem) + 1023) & ~1023u;  // the swizzle repeats every 1024 bytes
    const int M = N * OH * OW, KT = (KH * KW * C + BK - 1) / BK;
    const int n0 = blockIdx.x * BN, m0 = blockIdx.y * BM, tid = threadIdx.x;
    const auto copies = FPROP_COPIES(THREADS);
    float acc[BN / 2];  // set by the first k-tile's multiply
    wgmma_pipelined(KT, stage_loads(copies, sbase), [&](int stage, bool first) {
        fprop_stage_mma<T>(acc, sbase + stage * STAGE_BYTES, tid / 128, first);
    });
    fprop_store(acc, bias, y, m0, n0, tid / 128, M, O, OH, OW, YN, YH, YW);
}

// The same product by a block of three warpgroups (specialized_produce / specialized_consume): one
// copies, two multiply, one block a multiprocessor with more stages; it wins on long reductions
// and wide N.
template <typename T>
__global__ void __launch_bounds__(wg::SPECIALIZED_THREADS, 1) conv_fprop_wgmma_specialized(FPROP_PARAMS(T)) {
    using namespace wg;
    extern __shared__ unsigned char smem[];
    const unsigned bars = smem_address(smem);
    const unsigned sbase = (bars + 16 * STAGES + 1023) & ~1023u;
    const int M = N * OH * OW, KT = (KH * KW * C + BK - 1) / BK;
    const int n0 = blockIdx.x * BN, m0 = blockIdx.y * BM, tid = threadIdx.x;
    float acc[BN / 2];
    const int group = specialized_product(
        bars, sbase, KT, [&] { return FPROP_COPIES(128); },
        [&](unsigned stage, int g, bool first) { fprop_stage_mma<T>(acc, stage, g, first); });
    if (group >= 0) fprop_store(acc, bias, y, m0, n0, group, M, O, OH, OW, YN, YH, YW);
}

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
// from the one before only, so a warpgroup must not wait on a stage two fillings ahead. BN <= 128
// (the accumulators of 128 x BN a warpgroup).
template <typename T>
__global__ void __launch_bounds__(wg::TMA_THREADS, 1)
    conv_fprop_tma_pingpong(const __grid_constant__ TensorMap x_map, const __grid_constant__ TensorMap w_map,
                            const float* __restrict__ bias, T* __restrict__ y, int N, int C, int O, int KH, int KW,
                            int SH, int SW, int PH, int PW, int DH, int DW, int OH, int OW, int YN, int YH, int YW) {
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
}

// The cp.async copies of one stage of the weight gradient's GEMM, dw[o][k] = sum_p dy[p][o] patch(x)[p][k],
// from `threads` threads. Both operands arrive with the pixel as the row (dy (P, O), the patches
// (P, K)): MN-major, each 64-wide block of columns a swizzled 64 x 64 tile of its own. This
// thread copies 16-byte chunk `cc` (8 output channels) of dy and chunks cc + A_CHUNKS j (8 values
// of k, one tap's channels) of the patches, of pixel rows cr + RP i; rows past P, the padding and
// columns past O or K read zeros.
template <typename T, int THREADS_> struct WgradCopies {
    static constexpr int A_CHUNKS = wg::BM / 8, B_CHUNKS = wg::BN / 8, RP = THREADS_ / A_CHUNKS,
                         PASSES = wg::BK / RP, B_COLS = (B_CHUNKS + A_CHUNKS - 1) / A_CHUNKS,
                         BLOCK = wg::BK * wg::ROW;  // one 64-column block of a tile
    const T* x;
    const T* dy;
    int H, W, C, O, SH, SW, OW, OHW, P, p0, cc, cr, o;
    FastDiv by_ohw, by_ow;
    int hoff[B_COLS], woff[B_COLS], koff[B_COLS];
    bool k_ok[B_COLS];

    // the tile (o0, k0) over the pixel tiles from kt0 on
    __device__ __forceinline__ WgradCopies(const T* x_, const T* dy_, int o0, int k0, int kt0, int tid, int N, int H_,
                                           int W_, int C_, int O_, int KH, int KW, int SH_, int SW_, int PH, int PW,
                                           int DH, int DW, int OH, int OW_)
        : x(x_), dy(dy_), H(H_), W(W_), C(C_), O(O_), SH(SH_), SW(SW_), OW(OW_), OHW(OH * OW_), P(N * OH * OW_),
          p0(kt0 * wg::BK), cc(tid % A_CHUNKS), cr(tid / A_CHUNKS), o(o0 + cc * 8), by_ohw(OH * OW_), by_ow(OW_) {
        const int K = KH * KW * C;
#pragma unroll
        for (int j = 0; j < B_COLS; ++j) {
            const int k = k0 + (cc + A_CHUNKS * j) * 8, tap = k / C, c = k - tap * C, kh = tap / KW, kw = tap - kh * KW;
            k_ok[j] = cc + A_CHUNKS * j < B_CHUNKS && k < K;
            hoff[j] = kh * DH - PH, woff[j] = kw * DW - PW, koff[j] = c;
        }
    }

    // pixel tile kt (counted from kt0) into the tiles at shared addresses sa (dy) and sb (patches)
    __device__ __forceinline__ void load(unsigned sa, unsigned sb, int kt) const {
#pragma unroll
        for (int i = 0; i < PASSES; ++i) {
            const int r = cr + RP * i, p = p0 + kt * wg::BK + r;
            const bool p_ok = p < P, a_ok = p_ok && o < O;
            copy16(sa + (cc >> 3) * BLOCK + swizzle<8>(r, cc & 7), a_ok ? dy + (long long)p * O + o : dy, a_ok);
            const int pp = p_ok ? p : 0, n = by_ohw(pp), rem = pp - n * OHW, oh = by_ow(rem), ow = rem - oh * OW;
#pragma unroll
            for (int j = 0; j < B_COLS; ++j) {
                const int chunk = cc + A_CHUNKS * j, ih = oh * SH + hoff[j], iw = ow * SW + woff[j];
                const bool ok = p_ok && k_ok[j] && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W;
                if (chunk < B_CHUNKS)
                    copy16(sb + (chunk >> 3) * BLOCK + swizzle<8>(r, chunk & 7),
                           ok ? x + (((long long)n * H + ih) * W + iw) * C + koff[j] : x, ok);
            }
        }
    }
};

#ifndef WG_MN_LEADING  // MN-major operands: the byte offset between 64-wide blocks (1), or between
#define WG_MN_LEADING 1  // groups of 8 rows (0), goes in the descriptor's leading-offset field
#endif

// The weight gradient's multiply of one stage by warpgroup `group`: its 64 output channels (a
// 64-column block of the dy tile) by the patch tile, in k16 steps over the pixels, 16 rows on;
// `first` overwrites acc.
template <typename T> __device__ __forceinline__ void wgrad_stage_mma(float (&acc)[wg::BN / 2], unsigned stage_base,
                                                                      int group, bool first = false) {
    using namespace wg;
    constexpr unsigned BLOCK = BK * ROW, leading = WG_MN_LEADING ? BLOCK : ATOM, stride = WG_MN_LEADING ? ATOM : BLOCK;
    const unsigned sa = stage_base + group * BLOCK, sb = stage_base + A_BYTES;
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk)
        wgmma<1, 1>(acc, matrix_desc(sa + kk * 16 * ROW, leading, stride), matrix_desc(sb + kk * 16 * ROW, leading, stride),
                    (T*)nullptr, kk > 0 || !first);
}

// out[row][col] = acc, float, for warpgroup `group`'s 64 rows of the (O, K) tile at (o0, k0)
__device__ __forceinline__ void wgrad_store(const float (&acc)[wg::BN / 2], float* __restrict__ out, int o0, int k0,
                                            int group, int O, int K) {
    const int lane = threadIdx.x & 31, row = o0 + group * 64 + ((threadIdx.x >> 5) & 3) * 16 + (lane >> 2);
#pragma unroll
    for (int j = 0; j < wg::BN / 8; ++j) {
        const int col = k0 + j * 8 + (lane & 3) * 2;
        if (col >= K) continue;
#pragma unroll
        for (int h = 0; h < 2; ++h)
            if (row + 8 * h < O)
                *reinterpret_cast<float2*>(out + (long long)(row + 8 * h) * K + col) =
                    make_float2(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
    }
}

// Partial weight gradients, as conv_wgrad in implicit_gemm.cu: block (x, y, z) computes the
// BM x BN tile (output channels, k) over the pixel tiles [z * tiles, (z + 1) * tiles) into
// split z of `partial` (splits, O, K).
#define WGRAD_PARAMS(T)                                                                                            \
    const T *__restrict__ x, const T *__restrict__ dy, float *__restrict__ partial, int N, int H, int W, int C, int O, \
        int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW, int OH, int OW, int tiles
#define WGRAD_SETUP                                                                                \
    const int K = KH * KW * C, k0 = blockIdx.x * BN, o0 = blockIdx.y * BM, kt0 = blockIdx.z * tiles; \
    const int KT = min((N * OH * OW + BK - 1) / BK - kt0, tiles), tid = threadIdx.x;                 \
    float* out = partial + (long long)blockIdx.z * O * K
#define WGRAD_COPIES(threads) \
    WgradCopies<T, threads>(x, dy, o0, k0, kt0, tid, N, H, W, C, O, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)

// ... by a block of two warpgroups that copy and multiply in turn (wgmma_pipelined)
template <typename T> __global__ void __launch_bounds__(wg::THREADS) conv_wgrad_wgmma(WGRAD_PARAMS(T)) {
    using namespace wg;
    extern __shared__ unsigned char smem[];
    const unsigned sbase = (smem_address(smem) + 1023) & ~1023u;
    WGRAD_SETUP;
    const auto copies = WGRAD_COPIES(THREADS);
    float acc[BN / 2];
    wgmma_pipelined(KT, stage_loads(copies, sbase), [&](int stage, bool first) {
        wgrad_stage_mma<T>(acc, sbase + stage * STAGE_BYTES, tid / 128, first);
    });
    wgrad_store(acc, out, o0, k0, tid / 128, O, K);
}

// ... by a block of three warpgroups, one copying and two multiplying (specialized_produce /
// specialized_consume), one block a multiprocessor with more stages
template <typename T>
__global__ void __launch_bounds__(wg::SPECIALIZED_THREADS, 1) conv_wgrad_wgmma_specialized(WGRAD_PARAMS(T)) {
    using namespace wg;
    extern __shared__ unsigned char smem[];
    const unsigned bars = smem_address(smem);
    const unsigned sbase = (bars + 16 * STAGES + 1023) & ~1023u;
    WGRAD_SETUP;
    float acc[BN / 2];
    const int group = specialized_product(
        bars, sbase, KT, [&] { return WGRAD_COPIES(128); },
        [&](unsigned stage, int g, bool first) { wgrad_stage_mma<T>(acc, stage, g, first); });
    if (group >= 0) wgrad_store(acc, out, o0, k0, group, O, K);
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

#define MT_INSTANTIATE(T)                                                                                    \
    template __global__ void conv_fprop_wgmma<T>(const T*, const T*, const float*, T*, int, int, int, int, int, \
                                                 int, int, int, int, int, int, int, int, int, int, int, int, int); \
    template __global__ void conv_fprop_wgmma_specialized<T>(const T*, const T*, const float*, T*, int, int, int, \
                                                             int, int, int, int, int, int, int, int, int, int, int, \
                                                             int, int, int, int);                                   \
    template __global__ void conv_fprop_tma<T>(const __grid_constant__ TensorMap, const __grid_constant__ TensorMap, \
        const float*, T*, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int);    \
    template __global__ void conv_fprop_tma_pingpong<T>(const __grid_constant__ TensorMap,                     \
        const __grid_constant__ TensorMap, const float*, T*, int, int, int, int, int, int, int, int, int, int, int,  \
        int, int, int, int, int);                                                                                \
    template __global__ void conv_wgrad_wgmma<T>(const T*, const T*, float*, int, int, int, int, int, int, int, \
                                                 int, int, int, int, int, int, int, int, int);             \
    template __global__ void conv_wgrad_tma<T>(const __grid_constant__ TensorMap, const __grid_constant__ TensorMap, \
        float*, int, int, int, int, int, int, int, int, int, int, int, int, int, int);                              \
    template __global__ void conv_wgrad_wgmma_specialized<T>(const T*, const T*, float*, int, int, int, int, int, \
                                                             int, int, int, int, int, int, int, int, int, int, int);

MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
