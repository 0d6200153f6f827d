"""The CPU backend: NumPy running the generic kernels of `ArrayBackend`."""
import numpy as np
from scipy.special import erf

from .array_backend import ArrayBackend
from .device import Device


class CPUBackend(ArrayBackend):
    name = "cpu"

    def __init__(self):
        super().__init__(np, Device("cpu"), erf)
