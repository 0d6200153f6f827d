// Batch normalisation in training mode over x of shape (N, C, L), contiguous.
// One block per channel (grid-stride over channels): the block reduces the
// N*L values of its channel, then normalises them. Two passes (mean, then the
// sum of squared deviations) with double accumulators, so float32 statistics
// are as accurate as NumPy's pairwise sums.

__device__ __forceinline__ float mt_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double mt_sqrt(double x) { return sqrt(x); }

// Sum of v over the block; every thread gets the result. `partials` holds 32
// doubles of shared memory. blockDim.x must be a multiple of 32.
__device__ __forceinline__ double block_sum(double v, double* partials) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) partials[warp] = v;
    __syncthreads();
    v = partials[0];
    for (int k = 1; k < nwarps; ++k) v += partials[k];
    return v;
}

// y = (x - mean) * (invstd * weight) + bias,  invstd = 1 / sqrt(var + eps),
// var the biased (population) variance. weight/bias may be null (1 and 0).
template <typename T>
__global__ void batch_norm_forward(const T* __restrict__ x, const T* __restrict__ weight, const T* __restrict__ bias,
                                   T* __restrict__ y, T* __restrict__ mean_out, T* __restrict__ invstd_out, int N,
                                   int C, long long L, T eps) {
    __shared__ double partials[32];
    const long long M = (long long)N * L;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {
        double s = 0.0;
        for (long long k = threadIdx.x; k < M; k += blockDim.x) {
            long long n = k / L;
            s += (double)x[(n * C + c) * L + (k - n * L)];
        }
        s = block_sum(s, partials);
        const double mean = s / (double)M;
        double ss = 0.0;
        for (long long k = threadIdx.x; k < M; k += blockDim.x) {
            long long n = k / L;
            double d = (double)x[(n * C + c) * L + (k - n * L)] - mean;
            ss += d * d;
        }
        ss = block_sum(ss, partials);
        const T mean_t = T(mean);
        const T var_t = T(ss / (double)M);
        const T invstd = T(1) / mt_sqrt(var_t + eps);
        const T scale = invstd * (weight ? weight[c] : T(1));
        const T shift = bias ? bias[c] : T(0);
        if (threadIdx.x == 0) {
            mean_out[c] = mean_t;
            invstd_out[c] = invstd;
        }
        for (long long k = threadIdx.x; k < M; k += blockDim.x) {
            long long n = k / L;
            long long idx = (n * C + c) * L + (k - n * L);
            y[idx] = (x[idx] - mean_t) * scale + shift;
        }
    }
}

// xhat = (x - mean) * invstd;  dbias = sum grad;  dweight = sum grad * xhat;
// dx = weight * invstd / M * (M * grad - dbias - xhat * dweight)
template <typename T>
__global__ void batch_norm_backward(const T* __restrict__ grad, const T* __restrict__ x, const T* __restrict__ weight,
                                    const T* __restrict__ mean, const T* __restrict__ invstd, T* __restrict__ dx,
                                    T* __restrict__ dweight, T* __restrict__ dbias, int N, int C, long long L) {
    __shared__ double partials[32];
    const long long M = (long long)N * L;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {
        const T mu = mean[c], is = invstd[c];
        double sg = 0.0, sgx = 0.0;
        for (long long k = threadIdx.x; k < M; k += blockDim.x) {
            long long n = k / L;
            long long idx = (n * C + c) * L + (k - n * L);
            T g = grad[idx];
            T xhat = (x[idx] - mu) * is;
            sg += (double)g;
            sgx += (double)(g * xhat);
        }
        sg = block_sum(sg, partials);
        sgx = block_sum(sgx, partials);
        const T db = T(sg), dw = T(sgx), m = T(M);
        if (threadIdx.x == 0) {
            dbias[c] = db;
            dweight[c] = dw;
        }
        const T k0 = (weight ? weight[c] : T(1)) * is / m;
        for (long long k = threadIdx.x; k < M; k += blockDim.x) {
            long long n = k / L;
            long long idx = (n * C + c) * L + (k - n * L);
            T xhat = (x[idx] - mu) * is;
            dx[idx] = k0 * (m * grad[idx] - db - xhat * dw);
        }
    }
}

#define MT_INSTANTIATE(T)                                                                                       \
    template __global__ void batch_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int, int, long long, \
                                                   T);                                                          \
    template __global__ void batch_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, \
                                                    int, int, long long);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
