"""`linear`: y = x W^T + b over the last dimension, as one Function (one GEMM each way)."""
from ...autograd.function import Function
from ...ops import autocast_policy
from .util import check_float, check_same_device, check_same_dtype, check_tensor


class Linear(Function):
    """Input (*, in), weight (out, in), bias (out,) or None -> (*, out).

    The leading dimensions are flattened into one GEMM with the weight."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        need_x, need_w, need_b = ctx.needs_input_grad
        # each gradient reads only the other operand (the saved originals are version-checked)
        ctx.save_for_backward(x if need_w else None, weight if need_x else None)
        out = ctx.backend.matmul(x.reshape(-1, x.shape[-1]), weight.T)
        if bias is not None:
            out += bias
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

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
    check_float(input, "input", "linear")
    check_tensor(weight, "weight", "linear")
    if bias is not None:
        check_tensor(bias, "bias", "linear")
    if input.ndim == 0:
        raise ValueError("linear(): input must have at least 1 dimension (*, in_features), got a 0-d tensor")
    if weight.ndim != 2:
        raise ValueError(f"linear(): weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
    if input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear(): input of shape {tuple(input.shape)} has {input.shape[-1]} features in its last "
                         f"dimension but weight of shape {tuple(weight.shape)} expects {weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear(): bias of shape {tuple(bias.shape)} doesn't match weight of shape "
                         f"{tuple(weight.shape)} "
                         f"(expected ({weight.shape[0]},))")
    check_same_dtype("linear", input, weight=weight, bias=bias)
    check_same_device("linear", input, weight=weight, bias=bias)
    return Linear.apply(input, weight, bias)
