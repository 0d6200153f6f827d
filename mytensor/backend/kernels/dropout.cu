// Dropout masks from a counter-based RNG: Philox4x32-10 (Salmon et al., 2011,
// "Parallel random numbers: as easy as 1, 2, 3"; the generator of Random123
// and cuRAND).
//
// Each output element i is a pure function of (seed, offset, i): the 128-bit
// counter is (offset + i/4, 0) and the key is the 64-bit seed; word i%4 of
// the output block becomes a uniform u in [0, 1) with 24 random bits.
//
// seed and offset live in device memory, in `state` = {offset, blocks done, seed}, and the
// kernel itself moves the offset on by ceil(n/4) once every block has read it: successive
// masks use disjoint counters, the host never tracks (or reads) the offset, and a launch
// recorded in a CUDA graph draws a fresh mask at every replay. The last block to finish does
// the move (its ticket from `blocks done` says so), as in CUDA's threadFenceReduction sample.
// Masks of every float type: the 16-bit ones get the scale rounded once from float.

#include "common.cuh"

struct Philox4 {
    unsigned int x, y, z, w;
};

__host__ __device__ __forceinline__ unsigned int mulhi32(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}

__host__ __device__ __forceinline__ Philox4 philox4x32_10(Philox4 ctr, unsigned int k0, unsigned int k1) {
    const unsigned int M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const unsigned int W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {  // the key schedule bumps before rounds 2..10
            k0 += W0;
            k1 += W1;
        }
        unsigned int hi0 = mulhi32(M0, ctr.x), lo0 = M0 * ctr.x;
        unsigned int hi1 = mulhi32(M1, ctr.z), lo1 = M1 * ctr.z;
        Philox4 next = {hi1 ^ ctr.y ^ k0, lo1, hi0 ^ ctr.w ^ k1, lo0};
        ctr = next;
    }
    return ctr;
}

// out[i] = scale if u_i >= p else 0   (scale = 1/(1-p), the inverted-dropout mask)
template <typename T>
__global__ void dropout_mask(T* __restrict__ out, long long n, unsigned long long* state, float p,
                             acc_t<T> scale) {
    const long long groups = (n + 3) / 4;
    const volatile unsigned long long* shared_state = state;  // read from memory: another block may move it
    const unsigned long long offset = shared_state[0], seed = shared_state[2];
    const unsigned int k0 = (unsigned int)seed, k1 = (unsigned int)(seed >> 32);
    const T kept = T(scale), dropped = T(acc_t<T>(0));
    for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < groups;
         g += (long long)blockDim.x * gridDim.x) {
        unsigned long long c = offset + (unsigned long long)g;
        Philox4 ctr = {(unsigned int)c, (unsigned int)(c >> 32), 0u, 0u};
        Philox4 r = philox4x32_10(ctr, k0, k1);
        unsigned int words[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            long long i = g * 4 + k;
            if (i < n) {
                float u = (float)(words[k] >> 8) * (1.0f / 16777216.0f);
                out[i] = u >= p ? kept : dropped;
            }
        }
    }
    __syncthreads();  // every thread of this block has read the offset
    if (threadIdx.x == 0) {
        __threadfence();
        unsigned long long ticket = atomicAdd(&state[1], 1ull);
        if (ticket == gridDim.x - 1) {  // the last block: all have read it
            state[0] = offset + (unsigned long long)groups;
            state[1] = 0;
        }
    }
}

#define MT_INSTANTIATE(T) \
    template __global__ void dropout_mask<T>(T*, long long, unsigned long long*, float, acc_t<T>);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
