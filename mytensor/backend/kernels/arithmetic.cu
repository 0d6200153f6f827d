// Elementwise arithmetic at the memory's pace: one 16-byte pack (8 elements of a 16-bit type,
// 4 floats, 2 doubles) a thread per step, where CuPy's kernels load one element at a time. The
// 16-bit types add in float and round once, as CuPy and PyTorch do.
#include "common.cuh"

// out = a + b over n contiguous elements; the host checks that all three are 16-byte aligned.
// The n % W elements past the last whole pack go one a thread.
template <typename T>
__global__ void add_packed(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, long long n) {
    constexpr int W = Pack<T>::W;
    const long long packs = n / W, done = packs * W;
    GRID_STRIDE(i, packs) {
        const Pack<T> x = reinterpret_cast<const Pack<T>*>(a)[i], y = reinterpret_cast<const Pack<T>*>(b)[i];
        Pack<T> z;
#pragma unroll
        for (int j = 0; j < W; ++j) z.v[j] = T(acc_t<T>(x.v[j]) + acc_t<T>(y.v[j]));
        reinterpret_cast<Pack<T>*>(out)[i] = z;
    }
    GRID_STRIDE(i, n - done) out[done + i] = T(acc_t<T>(a[done + i]) + acc_t<T>(b[done + i]));
}

#define MT_INSTANTIATE(T) template __global__ void add_packed<T>(const T*, const T*, T*, long long);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
