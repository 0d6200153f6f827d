"""The CPU backend: NumPy running the generic kernels of `ArrayBackend`, with the
convolution im2col'd a block of samples at a time (`BlockedConv`)."""
import numpy as np
from scipy.special import erf

from .array_backend import ArrayBackend
from .blocked_conv import BlockedConv
from .device import Device


class CPUBackend(BlockedConv, ArrayBackend):
    name = "cpu"

    def __init__(self):
        super().__init__(np, Device("cpu"), erf)

    # NumPy's add keeps a channels-last layout itself (keep_layout is for CuPy's): the ufunc
    # itself, without a Python frame around it, as every add and every gradient sum calls it
    add = staticmethod(np.add)

    def relu(self, x):
        """max(x, 0) taken against an array of zeros where that keeps the layout: NumPy's maximum
        with a scalar operand runs a loop that is not vectorised, about twice as slow. The zeros
        are overwritten with the result: one allocation, not two."""
        if not x.flags.c_contiguous:
            return np.maximum(x, 0)
        zeros = np.zeros(x.shape, x.dtype)
        return np.maximum(x, zeros, out=zeros)
