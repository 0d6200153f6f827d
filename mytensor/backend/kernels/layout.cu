// Layout changes: out (B, S, R) = the transpose of each of the B (R, S) matrices of x, both
// contiguous. Between (N, C, H*W) and (N, H*W, C) this is the copy from NCHW to channels-last
// and back. A block moves a 32 x 32 tile through shared memory, so that both the reads and
// the writes run along rows (a strided elementwise copy would read one element per 32-byte
// sector on one side). Grid: (S / 32, R / 32, B) tiles, rounded up; block 32 x 8.
#include "common.cuh"

template <typename T>
__global__ void transpose_batched(const T* __restrict__ x, T* __restrict__ out, long long R, long long S) {
    __shared__ T tile[32][33];  // a column apart, the 32 reads of a tile column hit 32 banks
    const long long r0 = (long long)blockIdx.y * 32, s0 = (long long)blockIdx.x * 32;
    x += (long long)blockIdx.z * R * S;
    out += (long long)blockIdx.z * R * S;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const long long r = r0 + k, s = s0 + threadIdx.x;
        if (r < R && s < S) tile[k][threadIdx.x] = x[r * S + s];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const long long s = s0 + k, r = r0 + threadIdx.x;
        if (s < S && r < R) out[s * R + r] = tile[threadIdx.x][k];
    }
}

#define MT_INSTANTIATE(T) template __global__ void transpose_batched<T>(const T*, T*, long long, long long);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
