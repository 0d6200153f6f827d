"""mytensor: a deep-learning framework written from scratch, to read and to use.

    import mytensor as mt
    x = mt.randn(3, 4, requires_grad=True)
    (x @ x.T).sum().backward()

The package is laid out as PyTorch's is, so `import mytensor as torch` serves a
PyTorch program: `torch.nn.functional`, `torch.optim`, `torch.utils.data`,
`torch.cuda`, `torch.backends`, `torch.autograd` are all bound here (docs/porting.md).
"""
from .dtypes import (bool_ as bool, uint8, int32, int64, float16, bfloat16, float32, float64, DType,  # noqa: F401
                     get_default_dtype, set_default_dtype)
from .backend import Device, cuda_is_available, get_default_device, set_default_device  # noqa: F401
from .backend.matmul_precision import get_float32_matmul_precision, set_float32_matmul_precision  # noqa: F401
from .tensor import Size, Tensor  # noqa: F401
from .memory_formats import MemoryFormat as memory_format, channels_last, contiguous_format, preserve_format  # noqa: F401,E501
from .autograd.grad_mode import (no_grad, enable_grad, inference_mode, is_grad_enabled,  # noqa: F401
                                 set_grad_enabled)
from .autograd.function import Function  # noqa: F401
from .autograd.gradcheck import gradcheck  # noqa: F401
from .creation import (tensor, zeros, ones, empty, full, zeros_like, ones_like, empty_like, full_like,  # noqa: F401
                       arange, linspace, eye, rand, randn, rand_like, randn_like, randint, randperm, manual_seed,
                       from_numpy, from_dlpack, multinomial)
from .ops import *  # noqa: F401,F403
from . import ops  # noqa: F401
from . import tensor_methods  # noqa: F401  (attaches the op methods and operators to Tensor, from above)
from .amp import autocast, get_autocast_dtype, is_autocast_enabled  # noqa: F401
from . import amp  # noqa: F401
from .serialization import save, load  # noqa: F401
from . import unsupported as _unsupported

device = Device  # `torch.device("cuda", 0)`, `torch.device("cuda:0")`, `isinstance(d, torch.device)`
half, float, double, long = float16, float32, float64, int64

# the PyTorch module layout, so `torch.nn.functional.relu` and friends resolve after `import mytensor as torch`
from .random import Generator  # noqa: E402,F401
from . import autograd, nn, optim, data, utils, cuda, backends, accelerator, distributed  # noqa: E402,F401
from .nn.functional import softmax, log_softmax  # noqa: E402,F401

__getattr__ = _unsupported.module_getattr("torch", __name__)
