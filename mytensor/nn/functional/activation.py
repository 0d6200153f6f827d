"""Activation functions, with PyTorch's arguments. The elementwise ones that run the backend's
kernels are the Functions of ops/activation.py; softplus, elu and logsigmoid are composed from
ops.

softmax and log_softmax are computed stably (the maximum along `dim` is
subtracted first, inside `backend.log_softmax`). Their backwards:
    softmax:      dx = y * (g - sum(g * y))
    log_softmax:  dx = g - exp(y) * sum(g)
"""
from ... import dtypes
from ... import ops
from ...autograd.function import Function
from ...ops import autocast_policy
from ...ops.activation import Gelu, LeakyRelu, Relu, Silu
from ...ops.util import contiguous, norm_dim
from ...tensor import Tensor
from .util import check_float, check_tensor


def _float_input(input, fn):
    """Integer inputs are computed in the default float dtype, as the ops do."""
    check_tensor(input, "input", fn)
    return input if input.dtype.is_floating_point else input.to(dtypes.get_default_dtype())


# ---------------------------------------------------------------- elementwise
def relu(input, inplace=False):
    """max(0, x). `inplace` is accepted for PyTorch compatibility; the result is a new tensor."""
    if not isinstance(input, Tensor):  # (relu is on the hot path: the check's call only for its error)
        check_tensor(input, "input", "relu")
    return Relu.apply(input)  # (ops.relu without its call)


def sigmoid(input):
    """1 / (1 + exp(-x)), computed without overflow for large |x|."""
    return ops.sigmoid(_float_input(input, "sigmoid"))


def tanh(input):
    return ops.tanh(_float_input(input, "tanh"))


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x if x > 0 else negative_slope * x."""
    check_float(input, "input", "leaky_relu")
    return LeakyRelu.apply(input, float(negative_slope))


def gelu(input, approximate="none"):
    """x * Phi(x) with Phi the standard normal CDF; approximate='tanh' uses
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    check_float(input, "input", "gelu")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu(): approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(input, approximate)


def silu(input, inplace=False):
    """x * sigmoid(x) (also called swish)."""
    check_float(input, "input", "silu")
    return Silu.apply(input)


@autocast_policy.float32
def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, written so no exp overflows: relu(z) + log1p(exp(-|z|))."""
    check_float(input, "input", "softplus")
    z = input * beta
    soft = (ops.relu(z) + ops.log1p(ops.exp(-ops.abs(z)))) / beta
    return ops.where(z > threshold, input, soft)


def elu(input, alpha=1.0, inplace=False):
    check_float(input, "input", "elu")
    return ops.where(input > 0, input, alpha * ops.expm1(ops.clamp(input, max=0.0)))


def logsigmoid(input):
    return -softplus(-input)


# ---------------------------------------------------------------- softmax
class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        out = ctx.backend.log_softmax(contiguous(ctx.xp, x), dim)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        xp = ctx.xp
        return grad - xp.exp(out) * grad.sum(axis=ctx.dim, keepdims=True), None


class Softmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        out = ctx.xp.exp(ctx.backend.log_softmax(contiguous(ctx.xp, x), dim))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        gy = grad * out
        return gy - out * gy.sum(axis=ctx.dim, keepdims=True), None


def _softmax_args(input, dim, dtype, fn):
    check_tensor(input, "input", fn)
    if dim is None:
        raise TypeError(f"{fn}(): pass dim explicitly (PyTorch's implicit choice is deprecated)")
    if dtype is not None:
        input = input.to(dtype)
    input = _float_input(input, fn)
    d = norm_dim(dim, input.ndim)
    if input.ndim == 0:
        return input.reshape(1), 0, True
    return input, d, False


@autocast_policy.float32
def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """exp(x) / sum(exp(x)) along dim (stable: the maximum is subtracted first)."""
    x, d, scalar = _softmax_args(input, dim, dtype, "softmax")
    out = Softmax.apply(x, d)
    return out.reshape(()) if scalar else out


@autocast_policy.float32
def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """log(softmax(x)) along dim, computed as x - max - log(sum(exp(x - max)))."""
    x, d, scalar = _softmax_args(input, dim, dtype, "log_softmax")
    out = LogSoftmax.apply(x, d)
    return out.reshape(()) if scalar else out
