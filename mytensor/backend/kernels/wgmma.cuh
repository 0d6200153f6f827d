// What the Hopper (sm_90a) convolution kernels share: the tile constants, wgmma through matrix
// descriptors, mbarriers, the TMA copies, the consumers' half of the warp-specialized pipeline,
// and the forward's and weight gradient's multiply and store of one stage or tile. Files
// including it include common.cuh and tile_copy.cuh first.
#pragma once

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
