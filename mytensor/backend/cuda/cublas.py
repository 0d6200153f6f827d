"""The cuBLAS binding: batched matrix products through a handle of our own, called with ctypes."""
import ctypes
import os

import numpy as np

from .. import matmul_precision
from ..array_backend import LOW_PRECISION


class _Cublas:
    """Batched GEMM through a cuBLAS handle of our own, called directly.

    CuPy refuses to call cuBLAS while a stream is being captured into a CUDA
    graph; cuBLAS itself allows it once it has a workspace it need not
    allocate. So the matrix products of a training step go through this handle,
    and the whole step can be captured. One entry point serves every dtype:
    `cublasGemmStridedBatchedEx`, told the operands' type and the compute type.
    """
    OP_N, OP_T = 0, 1
    WORKSPACE_BYTES = 32 << 20
    # cudaDataType and cublasComputeType_t values (library_types.h, cublas_api.h)
    DATA_TYPE = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, LOW_PRECISION[0]: 2, LOW_PRECISION[1]: 14}
    COMPUTE_32F, COMPUTE_32F_FAST_TF32, COMPUTE_64F = 68, 77, 70
    GEMM_DEFAULT = -1

    def __init__(self, cupy):
        cupy.cuda.device.get_cublas_handle()  # makes CuPy load the cuBLAS library
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if os.path.basename(line.split()[-1]).startswith("libcublas.so")}
        if not paths:
            raise RuntimeError("cuBLAS is not loaded in this process")
        lib = ctypes.CDLL(paths.pop())
        self.handle = ctypes.c_void_p()
        self._check(lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate")
        self.workspace = cupy.empty(self.WORKSPACE_BYTES, dtype=np.uint8)
        self._check(lib.cublasSetWorkspace_v2(self.handle, ctypes.c_void_p(self.workspace.data.ptr),
                                              ctypes.c_size_t(self.WORKSPACE_BYTES)), "cublasSetWorkspace")
        self.set_stream = lib.cublasSetStream_v2
        self.set_stream.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.gemm = lib.cublasGemmStridedBatchedEx
        i, ll, p = ctypes.c_int, ctypes.c_longlong, ctypes.c_void_p
        self.gemm.argtypes = [p, i, i, i, i, i, p, p, i, i, ll, p, i, i, ll, p, p, i, i, ll, i, i, i]
        self.scalars = {False: (ctypes.c_float(1), ctypes.c_float(0)), True: (ctypes.c_double(1), ctypes.c_double(0))}

    @staticmethod
    def _check(status, what):
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    @staticmethod
    def operand(x):
        """(array, op, leading dimension, batch stride) of a stack of matrices
        that cuBLAS (column-major) reads as x^T, copying only when the last two
        dims are neither row- nor column-contiguous."""
        item, (r, c) = x.itemsize, x.shape[-2:]
        batch_stride = x.strides[0] // item if x.ndim == 3 and x.shape[0] > 1 else 0
        if x.strides[-1] == item and (x.strides[-2] == c * item or r == 1):
            return x, _Cublas.OP_N, max(c, 1), batch_stride
        if x.strides[-2] == item and (x.strides[-1] == r * item or c == 1):
            return x, _Cublas.OP_T, max(r, 1), batch_stride
        x = x.copy()  # C order
        return x, _Cublas.OP_N, max(c, 1), x.strides[0] // item if x.ndim == 3 and x.shape[0] > 1 else 0

    def compute_type(self, dtype):
        if dtype == np.float64:
            return self.COMPUTE_64F
        if dtype == np.float32 and matmul_precision.allows_tf32():
            return self.COMPUTE_32F_FAST_TF32
        return self.COMPUTE_32F  # strict FP32, and the accumulation of 16-bit products

    def matmul(self, cupy, a, b, alpha=None, c=None, beta=None):
        """a @ b for (m, k) or (batch, m, k) by (k, n) or (batch, n, k), row-major:
        computed as the column-major product b^T a^T, which is (a b)^T. With `alpha` and a
        C-contiguous `c` of the result's shape: alpha a @ b + beta c in the compute type, rounded once."""
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        batch = max(a.shape[0] if a.ndim == 3 else 1, b.shape[0] if b.ndim == 3 else 1)
        out_shape = (batch, m, n) if max(a.ndim, b.ndim) == 3 else (m, n)
        out = cupy.empty(out_shape, dtype=a.dtype) if c is None else c.copy()
        a, op_a, lda, stride_a = self.operand(a)
        b, op_b, ldb, stride_b = self.operand(b)
        dt = self.DATA_TYPE[a.dtype]
        wide = a.dtype == np.float64
        one, zero = self.scalars[wide]
        scalar = ctypes.c_double if wide else ctypes.c_float
        alpha = one if alpha is None else scalar(alpha)
        beta = zero if c is None else scalar(beta)
        self._check(self.set_stream(self.handle, cupy.cuda.get_current_stream().ptr), "cublasSetStream")
        self._check(self.gemm(self.handle, op_b, op_a, n, m, k, ctypes.byref(alpha), b.data.ptr, dt, ldb, stride_b,
                              a.data.ptr, dt, lda, stride_a, ctypes.byref(beta), out.data.ptr, dt, n, m * n, batch,
                              self.compute_type(a.dtype), self.GEMM_DEFAULT), "cublasGemmStridedBatchedEx")
        return out
