"""Backends: one module per device, each giving the array module (`xp`) that
generic math is written against, plus the hot kernels that differ per device.

`get_backend("cpu")` is NumPy; `get_backend("cuda")` is CuPy with our own
kernels, imported only when first asked for.
"""
from .device import Device, device, get_default_device, set_default_device  # noqa: F401
from .array_backend import ArrayBackend  # noqa: F401  (the base every backend extends)

_backends = {}


def get_backend(dev):
    dev = device(dev)
    key = (dev.type, dev.index)
    if key not in _backends:
        if dev.type == "cpu":
            from .cpu import CPUBackend
            _backends[key] = CPUBackend()
        else:
            from .cuda import CUDABackend
            _backends[key] = CUDABackend(dev)
    return _backends[key]


def backend_of_array(arr):
    """The backend owning a NumPy or CuPy array (used when wrapping foreign arrays)."""
    import numpy as np
    if isinstance(arr, np.ndarray) or np.isscalar(arr):
        return get_backend("cpu")
    dev = getattr(arr, "device", None)
    return get_backend(Device("cuda", getattr(dev, "id", 0)))


def cuda_is_available():
    try:
        from .cuda import is_available
    except ImportError:
        return False
    return is_available()
