"""`batch_norm`: normalise each channel C of an (N, C, ...) input.

Training uses the batch's statistics (`backend.batch_norm_train` on the input
viewed as (N, C, L)) and moves the running averages towards them in place, on
the device: running_mean <- (1 - m) running_mean + m mean, and the same for
running_var with the *unbiased* batch variance, as PyTorch does. Evaluation
uses the running statistics: y = (x - running_mean) / sqrt(running_var + eps)
* weight + bias, differentiable in input, weight and bias.

A float16/bfloat16 input may come with float32 weight, bias and running
statistics (mixed precision, as cuDNN allows): the statistics are computed in
float32 and the output has the input's dtype.
"""
import numpy as np

from ... import dtypes
from ...autograd.function import Function
from ...autograd.grad_mode import is_grad_enabled
from ...autograd.graph import increment_version
from ...backend.array_backend import is_channels_last
from ...ops import autocast_policy
from ...ops.util import contiguous
from .util import check_float, check_same_device, check_same_dtype, check_tensor


def _as_ncl(backend, a, channels_last):
    """`a` (N, C, ...) as the (N, C, L) array the kernels read; laid out channels-last, as
    (N*H*W, C, 1) instead (a view when `a` is channels-last, else a copy)."""
    if channels_last:
        return backend.ascontiguousarray(a.transpose(0, 2, 3, 1)).reshape(-1, a.shape[1], 1)
    return contiguous(backend.xp, a.reshape(a.shape[0], a.shape[1], -1))  # a copy only for a non-contiguous input


def _from_ncl(y3, shape, channels_last):
    """The (N, C, L) (or channels-last (N*H*W, C, 1)) result `y3` back in `shape`."""
    if channels_last:
        n, c, h, w = shape
        return y3.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    return y3.reshape(shape)


class BatchNorm(Function):
    """Normalises in the layout of its input (channels-last stays channels-last). With an
    `activation` ("relu", "gelu" or "gelu_tanh"), the output is activation(y), computed in the
    same passes forward and backward (`batch_norm_relu`, `nn.Sequential`'s fusion)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps, activation):
        xp, backend = ctx.xp, ctx.backend
        n, c = x.shape[:2]
        cl = is_channels_last(x)
        x3 = _as_ncl(backend, x, cl)
        stat = np.dtype(np.float32) if x.dtype.itemsize == 2 else x.dtype  # 16-bit inputs: float32 statistics
        t = stat.type
        w = contiguous(xp, weight.astype(stat, copy=False)) if weight is not None else xp.ones(c, dtype=stat)
        b = contiguous(xp, bias.astype(stat, copy=False)) if bias is not None else xp.zeros(c, dtype=stat)
        ctx.args = (x.shape, training, activation, cl)
        need_x, need_w, _ = ctx.needs_input_grad[:3]
        if training:
            running = None if running_mean is None else (running_mean, running_var, momentum)
            y, mean, invstd = backend.batch_norm_train(x3, w, b, eps, activation, running)
            # every gradient of the batch statistics reads x
            ctx.save_for_backward(x, w, b, mean, invstd, None)
        else:
            backward = is_grad_enabled() and any(ctx.needs_input_grad[:3])
            # for backward a copy: the running mean may be updated in place before it
            mean = running_mean.astype(stat, copy=backward)
            invstd = 1 / xp.sqrt(running_var.astype(stat, copy=False) + t(eps))
            scale = invstd * w
            shift = b - mean * scale
            if activation and backward:  # backward takes the activation's slope at z
                z = backend.batch_norm_apply(x3, scale, shift)
                y = backend.activation(z, activation)
            else:
                z, y = None, backend.batch_norm_apply(x3, scale, shift, activation)
            ctx.save_for_backward(x if need_w else None, w, b, mean, invstd, z)
        return _from_ncl(y, x.shape, cl)

    @staticmethod
    def backward(ctx, grad):
        x, w, b, mean, invstd, z3 = ctx.saved  # z3: the (N, C, L) input of an activation, in evaluation
        shape, training, activation, cl = ctx.args
        xp, backend = ctx.xp, ctx.backend
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        g3 = _as_ncl(backend, grad, cl)
        if training:
            # the batch statistics depend on x: the kernel's full formula
            gx, gw, gb = backend.batch_norm_backward(g3, _as_ncl(backend, x, cl), w, b, mean, invstd, activation)
            gx = _from_ncl(gx, shape, cl) if need_x else None
        else:
            g3 = backend.activation_backward(g3, z3, activation)
            gx = _from_ncl((g3 * (invstd * w)[:, None]).astype(grad.dtype), shape, cl) if need_x else None
            g3 = g3.astype(w.dtype, copy=False)
            gw = (g3 * ((_as_ncl(backend, x, cl).astype(w.dtype) - mean[:, None]) * invstd[:, None])).sum(
                axis=(0, 2)) if need_w else None
            gb = g3.sum(axis=(0, 2)) if need_b else None
        return gx, gw if need_w else None, gb if need_b else None, None, None, None, None, None, None


def _check_param_dtypes(input, **params):
    """Parameters in the input's dtype, or float32 ones for a 16-bit input (mixed precision)."""
    if input.dtype in dtypes.LOW_PRECISION:
        wide = {k: t for k, t in params.items() if t is not None and t.dtype is not input.dtype}
        for name, t in wide.items():
            if t.dtype is not dtypes.float32:
                raise TypeError(f"batch_norm(): input has dtype {input.dtype}, so {name} must have dtype "
                                f"{input.dtype} or float32, not {t.dtype}")
        params = {k: t for k, t in params.items() if k not in wide}
    check_same_dtype("batch_norm", input, **params)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation of input (N, C), (N, C, L) or (N, C, H, W), per channel C.

    With training=True the batch statistics are used and running_mean/running_var
    (if given) are updated in place; with training=False the running statistics
    are used and must be given."""
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, None)


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5):
    """relu(batch_norm(...)) in one pass over the data each way, not two (mytensor's own fused
    op; nn.Sequential uses it for a BatchNorm followed by a ReLU)."""
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, "relu")


def batch_norm_gelu(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5, approximate="none"):
    """gelu(batch_norm(...), approximate) in the batch norm's passes (mytensor's own fused op; nn.Sequential
    uses it for a BatchNorm followed by a GELU). Backward recomputes the GELU's input from x."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"batch_norm_gelu(): approximate must be 'none' or 'tanh', got {approximate!r}")
    activation = "gelu_tanh" if approximate == "tanh" else "gelu"
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, activation)


def _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, activation):
    check_float(input, "input", "batch_norm")
    if input.ndim < 2:
        raise ValueError(f"batch_norm(): expected an input of at least 2 dimensions (N, C, ...), got shape "
                         f"{tuple(input.shape)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is None:
            continue
        check_tensor(t, name, "batch_norm")
        if t.shape != (c,):
            raise ValueError(f"batch_norm(): {name} of shape {tuple(t.shape)} doesn't match input of shape "
                             f"{tuple(input.shape)} "
                             f"(expected ({c},), one value per channel)")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm(): give both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError("batch_norm(): running_mean and running_var are needed when training=False")
    if training:
        per_channel = input.numel() // c if c else 0
        if per_channel <= 1:
            raise ValueError(f"batch_norm(): expected more than 1 value per channel when training, got input of "
                             f"shape {tuple(input.shape)}")
    _check_param_dtypes(input, weight=weight, bias=bias)
    check_same_device("batch_norm", input, running_mean=running_mean, running_var=running_var, weight=weight,
                      bias=bias)
    momentum = 0.0 if momentum is None else float(momentum)
    raw_mean = running_mean._data if running_mean is not None else None
    raw_var = running_var._data if running_var is not None else None
    out = BatchNorm.apply(input, weight, bias, raw_mean, raw_var, bool(training), momentum, float(eps), activation)
    if training and running_mean is not None:
        increment_version((running_mean, running_var))  # written in place: let the graph checks see it
    return out



class LayerNorm(Function):
    """Normalise over the last dims of each sample: y = (x - mean) * rstd, out = y * w + b.
    Backward, with n elements normalised together and gy = grad * w:
        dx = rstd * (gy - mean(gy) - y * mean(gy * y)),  dw = sum(grad * y),  db = sum(grad)
    (float16 is computed in float32 and rounded at the end, as PyTorch does)."""

    @staticmethod
    def forward(ctx, x, weight, bias, dims, eps):
        xp = ctx.xp
        xw = x.astype("float32") if x.dtype == "float16" else x
        mean = xw.mean(axis=dims, keepdims=True)
        centred = xw - mean
        rstd = 1 / xp.sqrt((centred * centred).mean(axis=dims, keepdims=True) + xw.dtype.type(eps))
        y = centred * rstd
        ctx.args = (dims, x.dtype)
        ctx.save_for_backward(y, rstd, weight)
        out = y
        if weight is not None:
            out = out * weight
        if bias is not None:
            out = out + bias
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        y, rstd, weight = ctx.saved
        dims, dtype = ctx.args
        g = grad.astype(y.dtype, copy=False)
        batch = tuple(range(g.ndim - len(dims)))
        gw = (g * y).sum(axis=batch).astype(dtype, copy=False) if ctx.needs_input_grad[1] else None
        gb = g.sum(axis=batch).astype(dtype, copy=False) if ctx.needs_input_grad[2] else None
        gx = None
        if ctx.needs_input_grad[0]:
            gy = g * weight if weight is not None else g
            gx = rstd * (gy - gy.mean(axis=dims, keepdims=True) - y * (gy * y).mean(axis=dims, keepdims=True))
            gx = gx.astype(dtype, copy=False)
        return gx, gw, gb, None, None


@autocast_policy.float32
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation over the trailing `normalized_shape` dims (a transformer's norm)."""
    check_float(input, "input", "layer_norm")
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.ndim - len(shape):]) != shape or len(shape) > input.ndim:
        raise ValueError(f"layer_norm(): normalized_shape {shape} doesn't match the last dimensions of input of "
                         f"shape {tuple(input.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"layer_norm(): {name} of shape {tuple(t.shape)} must have normalized_shape {shape}")
    check_same_dtype("layer_norm", input, weight=weight, bias=bias)
    check_same_device("layer_norm", input, weight=weight, bias=bias)
    dims = tuple(range(input.ndim - len(shape), input.ndim))
    return LayerNorm.apply(input, weight, bias, dims, float(eps))


@autocast_policy.float32
def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise (N, C, ...) over each group of C / num_groups channels and the spatial dims, then
    scale and shift per channel. Composed from differentiable ops (their gradients are its own)."""
    check_float(input, "input", "group_norm")
    n, c = input.shape[:2]
    if c % num_groups:
        raise ValueError(f"group_norm(): {c} channels (input of shape {tuple(input.shape)}) can't be split into "
                         f"{num_groups} groups")
    x = input.reshape(n, num_groups, -1)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    y = ((x - mean) / (var + eps).sqrt()).reshape(*input.shape)
    affine = (1, c) + (1,) * (input.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(*affine)
    if bias is not None:
        y = y + bias.reshape(*affine)
    return y
