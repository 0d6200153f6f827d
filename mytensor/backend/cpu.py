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
