"""Backends: one module per device, each giving the array module (`xp`) that
generic math is written against, plus the hot kernels that differ per device.

`get_backend("cpu")` is NumPy; `get_backend("cuda")` is CuPy with our own
kernels, imported only when first asked for.
"""
import numpy as np

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


def loaded_backends():
    """The backends made so far (a device's is made when first asked for)."""
    return list(_backends.values())


def backend_of_array(arr):
    """The backend owning a NumPy or CuPy array (used when wrapping foreign arrays)."""
    if isinstance(arr, np.ndarray) or np.isscalar(arr):
        return get_backend("cpu")
    dev = getattr(arr, "device", None)
    return get_backend(Device("cuda", getattr(dev, "id", 0)))


def to_host(arr):
    """A NumPy array of `arr`'s values: a CuPy array's copied from its device, anything else
    (a NumPy array, a number, a nested list) through np.asarray. The one place that tells a
    device array from a host one."""
    if hasattr(arr, "__cuda_array_interface__"):
        return backend_of_array(arr).to_numpy(arr)
    return np.asarray(arr)


def cuda_is_available():
    try:
        from .cuda import is_available
    except ImportError:
        return False
    return is_available()
