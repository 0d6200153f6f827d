"""`linear`: y = x W^T + b over the last dimension, as one Function (one GEMM each way)."""
from ...autograd.function import Function
from ...dtypes import FLOATING
from ...ops import autocast_policy
from ...tensor import Tensor
from .util import check_float, check_same_device, check_same_dtype, check_tensor


class Linear(Function):
    """Input (*, in), weight (out, in), bias (out,) or None -> (*, out).

    The leading dimensions are flattened into one GEMM with the weight."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        need_x, need_w, need_b = ctx.needs_input_grad
        # each gradient reads only the other operand (the saved originals are version-checked)
        ctx.save_for_backward(x if need_w else None, weight if need_x else None)
        flat = x.ndim == 2
        out = ctx.backend.matmul(x if flat else x.reshape(-1, x.shape[-1]), weight.T)
        if bias is not None:
            out += bias
        return out if flat else out.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved
        need_x, need_w, need_b = ctx.needs_input_grad
        g = grad.reshape(-1, grad.shape[-1])
        gx = gw = gb = None
        if need_x:
            gx = ctx.backend.matmul(g, weight).reshape(grad.shape[:-1] + (weight.shape[1],))
        if need_w:
            gw = ctx.backend.matmul(g.T, x.reshape(-1, x.shape[-1]))
        if need_b:
            gb = g.sum(axis=0)
        return gx, gw, gb


@autocast_policy.lower_precision
def linear(input, weight, bias=None):
    """y = input @ weight.T + bias: input (*, in_features), weight (out_features, in_features)."""
    if not _usual(input, weight, bias):
        _check(input, weight, bias)
    return Linear.apply(input, weight, bias)


def _usual(input, weight, bias):
    """The arguments of nearly every call, seen at a glance (linear is on the hot path): float
    tensors of one dtype and device whose shapes fit. Anything else goes through `_check`."""
    if not (isinstance(input, Tensor) and isinstance(weight, Tensor) and (bias is None or isinstance(bias, Tensor))):
        return False
    x, w = input._data, weight._data
    return (x.dtype in FLOATING and w.dtype == x.dtype and weight._backend is input._backend and x.ndim >= 1
            and w.ndim == 2 and x.shape[-1] == w.shape[1]
            and (bias is None or (bias._data.dtype == x.dtype and bias._backend is input._backend
                                  and bias._data.shape == w.shape[:1])))


def _check(input, weight, bias):
    """Raise the error that names what is wrong with linear's arguments."""
    check_float(input, "input", "linear")
    check_tensor(weight, "weight", "linear")
    if bias is not None:
        check_tensor(bias, "bias", "linear")
    x_shape, w_shape = input._data.shape, weight._data.shape
    if not x_shape:
        raise ValueError("linear(): input must have at least 1 dimension (*, in_features), got a 0-d tensor")
    if len(w_shape) != 2:
        raise ValueError(f"linear(): weight must be 2-D (out_features, in_features), got shape {w_shape}")
    if x_shape[-1] != w_shape[1]:
        raise ValueError(f"linear(): input of shape {x_shape} has {x_shape[-1]} features in its last "
                         f"dimension but weight of shape {w_shape} expects {w_shape[1]}")
    if bias is not None and bias._data.shape != w_shape[:1]:
        raise ValueError(f"linear(): bias of shape {bias._data.shape} doesn't match weight of shape {w_shape} "
                         f"(expected ({w_shape[0]},))")
    check_same_dtype("linear", input, weight=weight, bias=bias)
    check_same_device("linear", input, weight=weight, bias=bias)
