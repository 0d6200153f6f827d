"""`mytensor.accelerator`: PyTorch's device-agnostic questions ("is there a GPU, which?").

    device = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else torch.device("cpu")

The only accelerator mytensor knows is a CUDA GPU.
"""
from . import cuda, unsupported
from .backend import Device

__getattr__ = unsupported.module_getattr("torch.accelerator", __name__)


def is_available():
    return cuda.is_available()


def current_accelerator(check_available=False):
    """The `cuda` device, or None where there is no GPU."""
    return Device("cuda") if cuda.is_available() else None


def device_count():
    return cuda.device_count()


def _require_accelerator():
    if not cuda.is_available():  # PyTorch's words, so programs that catch them still do
        raise RuntimeError("Cannot access accelerator device when none is available (mytensor.accelerator: no "
                           "CUDA GPU)")


def current_device_index():
    _require_accelerator()
    return cuda.current_device()


current_device_idx = current_device_index


def set_device_index(index):
    _require_accelerator()
    cuda.set_device(index)


set_device_idx = set_device_index


def synchronize(device=None):
    if cuda.is_available():
        cuda.synchronize(device)
