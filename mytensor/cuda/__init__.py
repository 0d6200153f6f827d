"""`mytensor.cuda`: the `torch.cuda` calls programs make to find and use a GPU.

mytensor runs on NVIDIA GPUs through CuPy. `"cuda"` means `cuda:0`; other GPUs
are named explicitly (`.to("cuda:1")`). Without CuPy or a GPU, `is_available()`
is False and the queries answer as PyTorch's do on a machine without one.

`graphed` (graphed_function.py) records a function, a whole training step, as a CUDA graph.
"""
from collections import namedtuple

from .. import unsupported
from ..backend import Device, cuda_is_available, get_backend
from ..backend.capture import GraphCaptureError  # noqa: F401
from .graphed_function import GraphedFunction, graphed  # noqa: F401

__getattr__ = unsupported.module_getattr("torch.cuda", __name__)

_DeviceProperties = namedtuple("_DeviceProperties", ["name", "major", "minor", "total_memory",
                                                     "multi_processor_count"])


def is_available():
    return cuda_is_available()


def device_count():
    if not cuda_is_available():
        return 0
    import cupy
    return cupy.cuda.runtime.getDeviceCount()


def is_initialized():
    from ..backend import loaded_backends
    return any(b.device.type == "cuda" for b in loaded_backends())


def init():
    _backend(None)


def _index(device):
    if device is None:
        return 0
    if isinstance(device, int):
        return device
    dev = Device(device)
    if dev.type != "cuda":
        raise ValueError(f"expected a CUDA device, got {dev}")
    return dev.index


def _backend(device):
    if not cuda_is_available():
        raise RuntimeError("mytensor.cuda: no CUDA GPU is available (install CuPy with '.[cuda]' on a machine "
                           "with an NVIDIA GPU); check mytensor.cuda.is_available() first")
    return get_backend(Device("cuda", _index(device)))


def current_device():
    return 0


def set_device(device):
    """Only device 0 can be the current one: `"cuda"` always means `cuda:0`."""
    if _index(device) != 0:
        raise NotImplementedError(f"torch.cuda.set_device({device!r}): mytensor's 'cuda' is always cuda:0; "
                                  f"name other GPUs explicitly, e.g. .to('cuda:{_index(device)}')")


def synchronize(device=None):
    """Wait until the GPU has finished the work queued so far (to time it, or before reading memory)."""
    _backend(device).synchronize()


def manual_seed(seed):
    """Seed the GPU's generators (a no-op without a GPU, as in PyTorch)."""
    if cuda_is_available():
        for i in range(device_count()):
            get_backend(Device("cuda", i)).seed(seed)


manual_seed_all = manual_seed


def get_device_properties(device=None):
    _backend(device)  # a clear error where there is no GPU (or no CuPy)
    import cupy
    p = cupy.cuda.runtime.getDeviceProperties(_index(device))
    name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
    return _DeviceProperties(name, p["major"], p["minor"], p["totalGlobalMem"], p["multiProcessorCount"])


def get_device_name(device=None):
    return get_device_properties(device).name


def get_device_capability(device=None):
    p = get_device_properties(device)
    return p.major, p.minor


def _pool(device):
    import cupy
    _backend(device)
    return cupy.get_default_memory_pool()


def memory_allocated(device=None):
    """Bytes held by tensors (CuPy's memory pool, in use); 0 without a GPU."""
    return _pool(device).used_bytes() if cuda_is_available() else 0


def memory_reserved(device=None):
    """Bytes the memory pool holds from the driver, in use or cached."""
    return _pool(device).total_bytes() if cuda_is_available() else 0


def empty_cache():
    """Give cached, unused blocks of the memory pool back to the driver."""
    if cuda_is_available():
        _pool(None).free_all_blocks()
