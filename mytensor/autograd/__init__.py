"""`mytensor.autograd`: the graph of recorded ops and what runs it backwards.

`function.py` holds the contract every built-in op follows (forward and backward on
raw arrays) and the graph's nodes; `engine.py` runs backward; `grad_mode.py` says
whether ops record; `gradcheck.py` checks gradients against finite differences.
"""
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .gradcheck import gradcheck  # noqa: F401
