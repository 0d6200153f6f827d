"""Tensor maps: the 128-byte descriptions of an array that Hopper's copy engine (TMA) reads to
move whole tiles into shared memory, encoded by the CUDA driver (`cuTensorMapEncodeTiled`,
`cuTensorMapEncodeIm2col`; CuPy does not bind them, so ctypes does). A kernel takes one by value
as a `__grid_constant__` parameter: a one-element NumPy array of 128 bytes, which CuPy passes
by value. A map holds its array's address, so maps are kept per address: the memory pool hands
the same addresses back step after step, and a CUDA graph replays the maps it captured.
"""
import ctypes

import numpy as np

from ..array_backend import LOW_PRECISION

_DATA_TYPE = {LOW_PRECISION[0]: 6, LOW_PRECISION[1]: 9}  # CU_TENSOR_MAP_DATA_TYPE_FLOAT16, _BFLOAT16
_SWIZZLE_128B, _L2_PROMOTION_256B = 3, 3  # (interleave and out-of-bounds fill: 0, none and zeros)
_MAP = np.dtype((np.void, 128))
IM2COL_CORNER = (-128, 127)  # the range of a 4-D im2col map's box corners
_CACHED = 4096  # maps kept before the cache starts afresh


def _u64s(*v):
    return (ctypes.c_uint64 * len(v))(*v)


def _u32s(*v):
    return (ctypes.c_uint32 * len(v))(*v)


class TensorMaps:
    """Encodes and keeps the tensor maps of 16-bit arrays."""

    def __init__(self):
        self._driver = ctypes.CDLL("libcuda.so.1")
        self._cache = {}

    def _encode(self, key, fn, *args):
        found = self._cache.get(key)
        if found is None:
            buffer = np.zeros(_MAP.itemsize + 64, np.uint8)  # the driver writes at a 64-byte boundary
            start = -buffer.ctypes.data % 64
            found = buffer[start:start + _MAP.itemsize].view(_MAP)
            status = fn(ctypes.c_void_p(found.ctypes.data), *args)
            if status != 0:
                raise RuntimeError(f"{fn.__name__} failed with CUDA driver error {status} for {key}")
            if len(self._cache) >= _CACHED:
                self._cache.clear()
            self._cache[key] = found
        return found

    def tiled(self, a, box):
        """The map of a C-ordered 2-D array `a` (rows, cols) whose copies are boxes of box =
        (cols, rows) elements, rows of 128 bytes in the 128-byte swizzle."""
        rows, cols = a.shape
        key = ("tiled", a.data.ptr, a.dtype, a.shape, box)
        return self._encode(key, self._driver.cuTensorMapEncodeTiled, _DATA_TYPE[a.dtype], 2,
                            ctypes.c_void_p(a.data.ptr), _u64s(cols, rows), _u64s(cols * a.itemsize),
                            _u32s(*box), _u32s(1, 1), 0, _SWIZZLE_128B, _L2_PROMOTION_256B, 0)

    def im2col(self, x, lower, upper, strides, channels, pixels):
        """The im2col map of a C-ordered NHWC array `x`: copies of `pixels` window origins by
        `channels` channels, the origins walking the box from `lower` to the far corner `upper`
        (both (w, h), offsets from the image's corners) by `strides` (w, h)."""
        n, h, w, c = x.shape
        key = ("im2col", x.data.ptr, x.dtype, x.shape, lower, upper, strides, channels, pixels)
        pixel = c * x.itemsize
        return self._encode(key, self._driver.cuTensorMapEncodeIm2col, _DATA_TYPE[x.dtype], 4,
                            ctypes.c_void_p(x.data.ptr), _u64s(c, w, h, n), _u64s(pixel, pixel * w, pixel * w * h),
                            (ctypes.c_int * 2)(*lower), (ctypes.c_int * 2)(*upper), channels, pixels,
                            _u32s(1, *strides, 1), 0, _SWIZZLE_128B, _L2_PROMOTION_256B, 0)
