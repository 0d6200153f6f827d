"""`mytensor.backends`: the `torch.backends` switches programs set, with what they mean here.

    torch.backends.cudnn.benchmark = True      # accepted; see cudnn.py
    torch.backends.mps.is_available()          # False: mytensor runs on the CPU and NVIDIA GPUs

`backends.cuda` (TF32 and matmul precision flags) lives beside these, in `cuda.py`
when it exists.
"""
from .. import unsupported
from . import cudnn, mps  # noqa: F401

__getattr__ = unsupported.module_getattr("torch.backends", __name__)
