"""The CUDA backend: CuPy arrays, plus our own kernels for the hot operations.

`CUDABackend` is `ArrayBackend` on CuPy: everything it does not override runs
the generic array code through CuPy. The overrides launch kernels written in
CUDA C++ under `backend/kernels/*.cu`, compiled at first use by NVRTC through
`cupy.RawModule` (CuPy keeps the compiled modules in its on-disk kernel cache,
`~/.cupy/kernel_cache` or $CUPY_CACHE_DIR, so a second start compiles nothing).

Every kernel exists for float32 and float64, and those that mixed-precision
training runs (convolution columns, pooling, ReLU, batch norm) also for float16
and bfloat16, computing in float32; other dtypes fall back to the generic code.
Matrix products go through cuBLAS (`cublasGemmStridedBatchedEx`): 16-bit
operands on the tensor cores with float32 accumulation, float32 operands in
strict FP32 or, when `set_float32_matmul_precision("high")` allows it, TF32. None of the overrides synchronises the host
with the device (no `.item()`, no copies back), so a training step built from
them can be captured in a CUDA graph.

The package: `kernels` (which kernels each .cu file holds, and loading them), `cublas` (the
matrix products), `graphs` (CUDA graphs), `implicit_gemm` (the tensor-core convolutions and the
choice of kernel for each shape) and `backend` (the backend class). It imports without
CuPy; `CUDABackend(...)` raises a RuntimeError saying what to install when CuPy or a GPU is
missing.
"""
from .backend import CUDABackend, is_available  # noqa: F401
