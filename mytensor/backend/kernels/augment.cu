// Batches of a dataset held in device memory, augmented on the way out: one launch gathers the
// batch's images from the uint8 (N, C, H, W) array, moves each by its own (dy, dx), mirrors it
// left-right where asked, blanks a square (cutout), and writes (pixel * scale[c] + shift[c])
// in the output type: a whole batch of normalised float images, one pass over memory.
//
// The semantics are ArrayBackend.augment_images' (the NumPy reference):
//   out[b, c, y, x] = F(y + dy_b, x + dx_b) * scale[c] + shift[c]
// where F is image index[b], mirrored if flip[b]; outside the image F is the pixel mirrored across
// the border (`reflect`, |d| < the side) or 0, and inside the cutout square of side `cutout_size`
// at (top, left) = cutout[b] the output is 0. Null pointers mean no shift, no flip, no cutout.
// The products and sums are rounded separately (__fmul_rn, __fadd_rn), as NumPy rounds them.

#include "common.cuh"

// the index of a position up to one side beyond [0, n) mirrored back into it (PyTorch's "reflect")
__device__ __forceinline__ int reflect_index(int i, int n) {
    if (i < 0) return -i;
    if (i >= n) return 2 * (n - 1) - i;
    return i;
}

// One thread per output element, a grid-stride loop over B*C*H*W.
template <typename T>
__global__ void augment_images(const unsigned char* __restrict__ images, const long long* __restrict__ index,
                               const int* __restrict__ translate, const unsigned char* __restrict__ flip,
                               const int* __restrict__ cutout, const float* __restrict__ scale,
                               const float* __restrict__ shift, T* __restrict__ out, int C, int H, int W,
                               int reflect, int cutout_size, long long total) {
    GRID_STRIDE(i, total) {
        const int x = (int)(i % W);
        long long t = i / W;
        const int y = (int)(t % H);
        t /= H;
        const int c = (int)(t % C);
        const long long b = t / C;
        if (cutout != nullptr) {
            const int top = cutout[2 * b], left = cutout[2 * b + 1];
            if (y >= top && y < top + cutout_size && x >= left && x < left + cutout_size) {
                out[i] = T(0.0f);
                continue;
            }
        }
        int u = y, v = x;
        if (translate != nullptr) {
            u += translate[2 * b];
            v += translate[2 * b + 1];
        }
        bool inside = true;
        if (reflect) {
            u = reflect_index(u, H);
            v = reflect_index(v, W);
        } else {
            inside = u >= 0 && u < H && v >= 0 && v < W;
        }
        if (flip != nullptr && flip[b]) v = W - 1 - v;
        const float pixel = inside ? (float)images[((index[b] * C + c) * H + u) * W + v] : 0.0f;
        out[i] = T(__fadd_rn(__fmul_rn(pixel, scale[c]), shift[c]));
    }
}

#define MT_INSTANTIATE(T)                                                                                       \
    template __global__ void augment_images<T>(const unsigned char*, const long long*, const int*,              \
                                               const unsigned char*, const int*, const float*, const float*, T*, \
                                               int, int, int, int, int, long long);

MT_INSTANTIATE(float)
MT_INSTANTIATE(double)
MT_INSTANTIATE(bf16_t)
MT_INSTANTIATE(half_t)
