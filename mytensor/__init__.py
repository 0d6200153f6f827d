"""mytensor: a deep-learning framework written from scratch, to read and to use.

    import mytensor as mt
    x = mt.randn(3, 4, requires_grad=True)
    (x @ x.T).sum().backward()
"""
from .dtypes import (bool_ as bool, uint8, int32, int64, float16, bfloat16, float32, float64, DType,  # noqa: F401
                     get_default_dtype, set_default_dtype)
from .backend import Device, device, cuda_is_available  # noqa: F401
from .backend.matmul_precision import get_float32_matmul_precision, set_float32_matmul_precision  # noqa: F401
from .tensor import Tensor  # noqa: F401
from .autograd.grad_mode import no_grad, enable_grad, is_grad_enabled, set_grad_enabled  # noqa: F401
from .autograd.function import Function  # noqa: F401
from .autograd.gradcheck import gradcheck  # noqa: F401
from .creation import (tensor, zeros, ones, empty, full, zeros_like, ones_like, empty_like, full_like,  # noqa: F401
                       arange, linspace, eye, rand, randn, rand_like, randn_like, randint, randperm, manual_seed,
                       from_numpy, from_dlpack)
from .ops import *  # noqa: F401,F403
from . import ops  # noqa: F401
from .amp import autocast, get_autocast_dtype, is_autocast_enabled  # noqa: F401
from . import amp, backends  # noqa: F401
from .serialization import save, load  # noqa: F401

half, float, double, long = float16, float32, float64, int64
