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
#include "wgmma.cuh"

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

// an arrival on `bar` made once every cp.async this thread issued so far has landed
__device__ __forceinline__ void copies_arrive(unsigned bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(bar) : "memory");
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

#define MT_INSTANTIATE(T)                                                                                    \
    template __global__ void conv_fprop_wgmma<T>(const T*, const T*, const float*, T*, int, int, int, int, int, \
                                                 int, int, int, int, int, int, int, int, int, int, int, int, int); \
    template __global__ void conv_fprop_wgmma_specialized<T>(const T*, const T*, const float*, T*, int, int, int, \
                                                             int, int, int, int, int, int, int, int, int, int, int, \
                                                             int, int, int, int);                                   \
    template __global__ void conv_wgrad_wgmma<T>(const T*, const T*, float*, int, int, int, int, int, int, int, \
                                                 int, int, int, int, int, int, int, int, int);             \
    template __global__ void conv_wgrad_wgmma_specialized<T>(const T*, const T*, float*, int, int, int, int, int, \
                                                             int, int, int, int, int, int, int, int, int, int, int);

MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
