// What the tensor-core kernels share: shared-memory addresses, 16-byte cp.async copies
// (zero-filling what lies outside the source), the XOR swizzle of their tiles and the
// packing of two results into one 32-bit store.
#pragma once

__device__ __forceinline__ unsigned smem_address(const void* p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// 16 bytes global -> shared, or 16 zero bytes when !valid (the source is then not read)
__device__ __forceinline__ void copy16(unsigned dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void copy_commit() { asm volatile("cp.async.commit_group;"); }
template <int N> __device__ __forceinline__ void copy_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

// Shared-memory byte offset of 16-byte chunk `chunk` of row `row`, rows of CHUNKS chunks: the
// chunk is XORed with the row (bits 1-2 for rows of 4 chunks, two rows to a 128-byte line;
// bits 0-2 for longer rows), so the 8 rows an ldmatrix reads, and the rows a warp's copies
// write, fall in 8 different bank groups. For rows of 8 chunks (128 bytes) this is the
// tensor cores' own 128-byte swizzle, which wgmma reads.
template <int CHUNKS> __device__ __forceinline__ int swizzle(int row, int chunk) {
    if (CHUNKS == 4) return row * 64 + ((chunk ^ (row >> 1)) & 3) * 16;
    return row * CHUNKS * 16 + (chunk ^ (row & 7)) * 16;
}

template <typename T> __device__ __forceinline__ unsigned pack2(float a, float b) {
    return (unsigned)T(a).bits | ((unsigned)T(b).bits << 16);
}
