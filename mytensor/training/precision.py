"""The numeric precision of a training run (`mytensor train --precision`):

    fp32   strict float32 everywhere (the CPU default)
    tf32   float32 tensors, matrix products on TF32 tensor cores
    bf16   autocast regions in bfloat16: convolutions and linear layers on bfloat16
           tensor cores, losses and batch-norm statistics in float32, float32
           parameters (the default on GPUs of compute capability 8.0 and later)
    fp16   autocast regions in float16 (needs loss scaling: `amp.GradScaler`)
"""
import contextlib

from .. import autocast, bfloat16, float16
from ..backend import get_backend, matmul_precision

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
_AUTOCAST = {"bf16": bfloat16, "fp16": float16}


def resolve_precision(name, device):
    """`auto` becomes bf16 on a GPU with bfloat16 tensor cores, else fp32."""
    if name in (None, "auto"):
        return "bf16" if device.type == "cuda" and get_backend(device).compute_capability >= (8, 0) else "fp32"
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose auto, {', '.join(PRECISIONS)}")
    return name


def autocast_region(precision, device):
    """The autocast region a forward pass (and its loss) runs in; a no-op for fp32 and tf32."""
    if precision not in _AUTOCAST:
        return contextlib.nullcontext()
    return autocast(device.type, dtype=_AUTOCAST[precision])


@contextlib.contextmanager
def matmul_precision_of(precision):
    """Float32 matrix products in TF32 for the `tf32` precision, strict otherwise, while the block runs."""
    saved = matmul_precision.get_float32_matmul_precision()
    matmul_precision.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        yield
    finally:
        matmul_precision.set_float32_matmul_precision(saved)
