"""Autocast's state and the casting policies ops follow inside an autocast region
(`mytensor.amp.autocast` opens the regions; this module is what ops consult).

Inside a region, each op runs in the dtype that suits it, with PyTorch's lists:
- lower precision (`lower_precision`): convolutions and matrix products (conv2d,
  linear, matmul, mm, bmm, dot) take their floating inputs in the region's dtype,
  float16 or bfloat16, which the tensor cores multiply with float32 accumulation;
- float32 (`float32`): ops whose results need float32's range or digits (exp, log,
  pow, reciprocal, rsqrt, sum, prod, cumsum, softmax, log_softmax, the losses)
  take 16-bit inputs in float32;
- every other op runs in the dtypes it is given (ReLU, pooling, batch norm, add,
  ...), with the usual promotion where dtypes meet (bfloat16 + float32 is float32).

float64 tensors are never cast. A cast is a recorded op (`Tensor.to`), so backward
runs each op in the dtype its forward chose and hands float32 gradients to float32
parameters. Casts are not cached across ops: a weight used twice is cast twice.
"""
import functools
import threading

from .. import dtypes
from ..tensor import Tensor


class _State(threading.local):
    def __init__(self):
        self.dtypes = {}  # device type ("cuda", "cpu") -> dtype of the open enabled region


_state = _State()
_open_regions = [0]  # enabled regions open in any thread; with none, ops skip the policies at once


def region_dtype(device_type):
    """The dtype of the enabled autocast region open for `device_type` in this thread, or None."""
    return _state.dtypes.get(device_type)


def enter_region(device_type, dtype):
    """Make `dtype` (None: autocast off) the region of `device_type`; returns what it replaces."""
    previous = _state.dtypes.get(device_type)
    _state.dtypes[device_type] = dtype
    _open_regions[0] += dtype is not None
    return previous


def exit_region(device_type, dtype, previous):
    _state.dtypes[device_type] = previous
    _open_regions[0] -= dtype is not None


def _to_lower(t):
    target = _state.dtypes.get(t.device.type)
    if target is None or t.dtype is target or not t.dtype.is_floating_point or t.dtype is dtypes.float64:
        return t
    return t.to(target)


def _to_float32(t):
    if t.dtype in dtypes.LOW_PRECISION and _state.dtypes.get(t.device.type) is not None:
        return t.to(dtypes.float32)
    return t


def _policy(cast):
    def decorate(fn):
        @functools.wraps(fn)
        def op(*args, **kwargs):
            if _open_regions[0]:
                args = [cast(a) if isinstance(a, Tensor) else a for a in args]
                kwargs = {k: cast(v) if isinstance(v, Tensor) else v for k, v in kwargs.items()}
            return fn(*args, **kwargs)
        return op
    return decorate


lower_precision = _policy(_to_lower)
lower_precision.__doc__ = "Decorate an op whose floating inputs autocast gives in the region's dtype."
float32 = _policy(_to_float32)
float32.__doc__ = "Decorate an op whose 16-bit floating inputs autocast gives in float32."
