"""Tensor maps for the bulk tensor copy engine (TMA) of Hopper GPUs.

A kernel copies a box of a global array into shared memory with one instruction when it holds
the array's tensor map: 128 opaque bytes that the driver's `cuTensorMapEncodeTiled` makes on the
host (CuPy does not wrap it, so ctypes reaches it in libcuda) and that the kernel takes by value
(`const __grid_constant__ TensorMap`, passed as CuPy passes a structured NumPy array).
"""
import ctypes

import numpy as np

_DATA_TYPES = {"bfloat16": 9, "float16": 6}  # CU_TENSOR_MAP_DATA_TYPE_*
_SWIZZLE_128B, _L2_PROMOTION_128B = 3, 2
MAP_DTYPE = np.dtype({"names": ["opaque"], "formats": [(np.uint64, (16,))], "itemsize": 128})
NO_MAP = np.zeros(1, MAP_DTYPE)  # the argument of kernels built without bulk copies
_encode = []


def _encoder():
    if not _encode:
        fn = ctypes.CDLL("libcuda.so.1").cuTensorMapEncodeTiled
        u64, u32 = ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint32)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p, u64, u64, u32, u32,
                       ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        fn.restype = ctypes.c_int
        _encode.append(fn)
    return _encode[0]


def can_map(array):
    """Whether `array` (2-D, 16-bit, C-contiguous) meets the copy engine's rules: its address and
    its rows' byte stride multiples of 16."""
    return array.dtype.name in _DATA_TYPES and array.data.ptr % 16 == 0 and array.shape[1] * 2 % 16 == 0


def tiled_2d(array, box_cols, box_rows):
    """The map of a 2-D array (rows, cols) read in boxes of box_rows x box_cols, laid out in
    shared memory in the 128-byte swizzle (box_cols * 2 must be 128); outside the array the
    boxes read zeros."""
    rows, cols = (int(s) for s in array.shape)
    raw = np.zeros(24, np.uint64)  # the driver writes a 64-byte-aligned CUtensorMap
    start = (-raw.ctypes.data % 64) // 8
    err = _encoder()(raw.ctypes.data + 8 * start, _DATA_TYPES[array.dtype.name], 2, array.data.ptr,
                     (ctypes.c_uint64 * 2)(cols, rows), (ctypes.c_uint64 * 1)(cols * 2),
                     (ctypes.c_uint32 * 2)(box_cols, box_rows), (ctypes.c_uint32 * 2)(1, 1),
                     0, _SWIZZLE_128B, _L2_PROMOTION_128B, 0)
    if err:
        raise RuntimeError(f"cuTensorMapEncodeTiled refused a {rows} x {cols} {array.dtype.name} array in "
                           f"{box_rows} x {box_cols} boxes (CUresult {err})")
    out = np.empty(1, MAP_DTYPE)
    out["opaque"][0] = raw[start:start + 16]
    return out
