"""`mytensor.backends`: the `torch.backends` switches programs set, with what they mean here.

    torch.backends.cudnn.benchmark = True      # the GPU convolutions pick kernels by timing; see cudnn.py
    torch.backends.mps.is_available()          # False: mytensor runs on the CPU and NVIDIA GPUs

    torch.backends.cuda.matmul.allow_tf32 = True   # float32 products on TF32 tensor cores; see cuda.py
"""
from .. import unsupported
from . import cuda, cudnn, mps  # noqa: F401

__getattr__ = unsupported.module_getattr("torch.backends", __name__)
