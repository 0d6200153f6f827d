"""`mytensor.autograd`: the graph of recorded ops and what runs it backwards.

`function.py` holds the contract every built-in op follows (forward and backward on
raw arrays) and the graph's nodes; `custom_function.py` the PyTorch contract for
user code (`mytensor.autograd.Function`, on Tensors); `engine.py` runs backward;
`grad_mode.py` says whether ops record; `gradcheck.py` checks gradients against
finite differences; `differentiate.py` is `autograd.grad`; `graph.py` has `increment_version`,
which code that writes a tensor's storage directly calls.
"""
from .. import unsupported
from .custom_function import Function, FunctionCtx, once_differentiable  # noqa: F401
from .differentiate import Variable, grad  # noqa: F401
from . import graph  # noqa: F401  (increment_version)
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .gradcheck import gradcheck  # noqa: F401

__getattr__ = unsupported.module_getattr("torch.autograd", __name__)
