"""Loss functions, with PyTorch's semantics and argument order.

cross_entropy with class-index targets on (N, C) logits runs the backend's fused
`softmax_cross_entropy` (one log-softmax, the loss and the probabilities that
backward needs); (N, C, d1, ...) inputs are brought to (N*d1*..., C) first.
'mean' divides by the number of targets that are not `ignore_index` (or by
their summed class weights): that count is computed on the device, so nothing
waits for the GPU.

Class indices out of range are checked on the CPU only: on the GPU that check
would need the values on the host (a synchronisation) in every step, so there
an out-of-range index gives an undefined loss instead of an error.
"""
import warnings

import numpy as np

from ... import dtypes
from ...autograd.function import Function
from ...ops import autocast_policy
from ...ops.util import broadcast_shapes, contiguous
from .activation import log_softmax
from .util import (check_float, check_reduction, check_same_device, check_same_dtype, check_tensor, reduce_loss,
                   reduction_from_legacy)


def _per_sample_grad(xp, grad, n, reduction, denom):
    """The gradient of each per-sample loss, from the gradient of the reduced loss."""
    if reduction == "none":
        return contiguous(xp, grad)
    if reduction == "mean":
        # every target ignored: the loss is nan, but (as in PyTorch) the gradient is 0, not nan * 0
        grad = grad / xp.where(denom == 0, 1, denom).astype(grad.dtype, copy=False)
    return xp.ascontiguousarray(xp.broadcast_to(grad, (n,)))


def _reduce(xp, loss, reduction, denom):
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):  # every target ignored: nan, as in PyTorch
        return total / denom


def _target_weights(xp, target, weight, ignore_index, dtype):
    """Per sample: the weight of its class (1 without weights), 0 where ignored; and
    the class index with ignored entries replaced by 0 (a safe index)."""
    valid = target != ignore_index
    safe_t = xp.where(valid, target, 0)
    wt = valid.astype(dtype) if weight is None else weight[safe_t] * valid
    return wt, safe_t


# ------------------------------------------------------------ cross entropy
class CrossEntropy(Function):
    """Class-index cross-entropy of logits (N, C) and targets (N,).

    Without class weights: the fused kernel. With weights w, per sample i with class t:
        loss_i = (1 - eps) w_t (-log p_it) + eps / C * sum_c w_c (-log p_ic)
    and d loss_i / d logits = (1 - eps) w_t (p - onehot_t) + eps / C * (p sum(w) - w)."""

    @staticmethod
    def forward(ctx, logits, target, weight, ignore_index, label_smoothing, reduction):
        xp, backend = ctx.xp, ctx.backend
        logits = contiguous(xp, logits)
        n, c = logits.shape
        ctx.args = (ignore_index, label_smoothing, reduction)
        if weight is None:
            loss, probs = backend.softmax_cross_entropy(logits, contiguous(xp, target), label_smoothing,
                                                        ignore_index)
            count = None
            if reduction != "none":  # the sum and the count of valid targets in one launch
                loss, count = backend.reduce_class_loss(loss, target, ignore_index, reduction == "mean")
            ctx.save_for_backward(probs, target, None, count)
            return loss
        logp = backend.log_softmax(logits, 1)
        probs = xp.exp(logp)
        wt, safe_t = _target_weights(xp, target, weight, ignore_index, logits.dtype)
        loss = -xp.take_along_axis(logp, safe_t[:, None], axis=1)[:, 0] * wt
        if label_smoothing:
            eps = logits.dtype.type(label_smoothing)
            smooth = -(logp * weight).sum(axis=1) * (target != ignore_index)
            loss = (1 - eps) * loss + eps / c * smooth
        denom = wt.sum()
        ctx.save_for_backward(probs, target, weight, denom)
        return _reduce(xp, loss, reduction, denom)

    @staticmethod
    def backward(ctx, grad):
        probs, target, weight, denom = ctx.saved
        ignore_index, label_smoothing, reduction = ctx.args
        xp = ctx.xp
        n, c = probs.shape
        if weight is None:  # the kernel divides by the count of a mean itself
            gx = ctx.backend.softmax_cross_entropy_backward(grad, probs, contiguous(xp, target), label_smoothing,
                                                            ignore_index, denom if reduction == "mean" else None)
            return gx, None, None, None, None, None
        gl = _per_sample_grad(xp, grad, n, reduction, denom)
        eps = probs.dtype.type(label_smoothing)
        wt, safe_t = _target_weights(xp, target, weight, ignore_index, probs.dtype)
        gx = probs * ((1 - eps) * wt)[:, None]
        gx[xp.arange(n), safe_t] -= (1 - eps) * wt
        if label_smoothing:
            valid = (target != ignore_index)[:, None]
            gx += eps / c * (probs * weight.sum() - weight) * valid
        gx *= gl[:, None]
        return gx, None, None, None, None, None


def _check_class_target(fn, input, target, ignore_index):
    """Integer class indices of shape input.shape without dim 1; returns them as int64."""
    if target.dtype is dtypes.bool_:
        raise TypeError(f"{fn}(): target must hold class indices (an integer tensor) or class probabilities "
                        f"(a float tensor of the input's shape), got a bool tensor")
    expected = input.shape[:1] + input.shape[2:] if input.ndim >= 2 else ()
    if target.shape != expected:
        raise ValueError(f"{fn}(): input of shape {tuple(input.shape)} needs class-index targets of shape "
                         f"{tuple(expected)}, "
                         f"got target of shape {tuple(target.shape)}")
    if target.dtype is not dtypes.int64:
        target = target.to(dtypes.int64)
    c = input.shape[1] if input.ndim >= 2 else input.shape[0]
    if target._backend.name == "cpu" and target.numel():
        # on the GPU this would synchronise every step: unchecked there (see the module docstring)
        t = target._data
        bad = (t != ignore_index) & ((t < 0) | (t >= c))
        if bad.any():
            raise IndexError(f"{fn}(): target {int(t[bad].reshape(-1)[0])} is out of bounds for {c} classes "
                             f"(input shape {tuple(input.shape)}, ignore_index={ignore_index})")
    return target


def _check_weight(fn, input, weight, c):
    if weight is None:
        return
    check_tensor(weight, "weight", fn)
    if weight.shape != (c,):
        raise ValueError(f"{fn}(): weight of shape {tuple(weight.shape)} doesn't match input of shape "
                         f"{tuple(input.shape)} "
                         f"(expected ({c},), one weight per class)")
    check_same_dtype(fn, input, weight=weight)


def _check_class_loss_args(fn, input, target, weight, size_average, reduce, reduction):
    """The checks cross_entropy and nll_loss share; returns the reduction."""
    check_float(input, "input", fn)
    check_tensor(target, "target", fn)
    reduction = reduction_from_legacy(size_average, reduce, reduction)
    check_reduction(reduction, fn)
    if input.ndim == 0:
        raise ValueError(f"{fn}(): input must have a class dimension, got a 0-d tensor")
    _check_weight(fn, input, weight, input.shape[1] if input.ndim >= 2 else input.shape[0])
    check_same_device(fn, input, target=target, weight=weight)
    return reduction


def _classes_last(input, target):
    """(N, C, d1, ...) -> (N*d1*..., C) and targets (N, d1, ...) -> (N*d1*...,); (C,) -> (1, C)."""
    if input.ndim == 1:
        return input.reshape(1, -1), target.reshape(1)
    if input.ndim == 2:
        return input, target
    c = input.shape[1]
    dims = (0,) + tuple(range(2, input.ndim)) + (1,)
    return input.permute(*dims).reshape(-1, c), target.reshape(-1)


@autocast_policy.float32
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of logits input (N, C), (N, C, d1, ...) or (C,) with either
    class indices (an integer tensor shaped like input without dim 1) or class
    probabilities (a float tensor of input's shape).

    label_smoothing eps mixes the target with the uniform distribution:
    (1 - eps) * target + eps / C. 'mean' over class indices divides by the summed
    weight of the non-ignored targets (their count without weights)."""
    fn = "cross_entropy"
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{fn}(): label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    reduction = _check_class_loss_args(fn, input, target, weight, size_average, reduce, reduction)
    if target.dtype.is_floating_point:
        return _cross_entropy_probs(input, target, weight, reduction, label_smoothing)
    target = _check_class_target(fn, input, target, ignore_index)
    x2, t1 = _classes_last(input, target)
    loss = CrossEntropy.apply(x2, t1, weight, int(ignore_index), float(label_smoothing), reduction)
    if reduction == "none":
        loss = loss.reshape(target.shape)
    return loss


def _cross_entropy_probs(input, target, weight, reduction, label_smoothing):
    """-sum_c w_c * target_c * log_softmax(input)_c, composed from differentiable ops
    (so the target gets a gradient too); 'mean' divides by the number of samples."""
    if target.shape != input.shape:
        raise ValueError(f"cross_entropy(): class-probability targets must have the input's shape: input of "
                         f"shape {tuple(input.shape)}, target of shape {tuple(target.shape)} (class indices would "
                         f"have shape {tuple(input.shape[:1] + input.shape[2:]) if input.ndim >= 2 else ()} and an "
                         "integer dtype)")
    check_same_dtype("cross_entropy", input, target=target)
    dim = 1 if input.ndim >= 2 else 0
    c = input.shape[dim]
    logp = log_softmax(input, dim)
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / c
    if weight is not None:
        logp = logp * weight.reshape((c,) + (1,) * (input.ndim - dim - 1))
    loss = -(logp * target).sum(dim)
    return reduce_loss(loss, reduction)


# ------------------------------------------------------------ nll
class NLLLoss(Function):
    """loss_i = -w_t * input[i, t] for log-probabilities input (N, C), 0 where t is ignored."""

    @staticmethod
    def forward(ctx, logp, target, weight, ignore_index, reduction):
        xp = ctx.xp
        wt, safe_t = _target_weights(xp, target, weight, ignore_index, logp.dtype)
        loss = -xp.take_along_axis(logp, safe_t[:, None], axis=1)[:, 0] * wt
        denom = wt.sum()
        ctx.shape = logp.shape
        ctx.reduction = reduction
        ctx.save_for_backward(wt, safe_t, denom)
        return _reduce(xp, loss, reduction, denom)

    @staticmethod
    def backward(ctx, grad):
        wt, safe_t, denom = ctx.saved
        xp = ctx.xp
        n, c = ctx.shape
        gl = _per_sample_grad(xp, grad, n, ctx.reduction, denom)
        gx = xp.zeros((n, c), dtype=grad.dtype)
        gx[xp.arange(n), safe_t] = -gl * wt
        return gx, None, None, None, None


@autocast_policy.float32
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of class indices given log-probabilities input
    (N, C), (N, C, d1, ...) or (C,) (e.g. the output of log_softmax)."""
    fn = "nll_loss"
    reduction = _check_class_loss_args(fn, input, target, weight, size_average, reduce, reduction)
    if target.dtype.is_floating_point:
        raise TypeError(f"{fn}(): target must hold class indices (an integer tensor), got {target.dtype}")
    target = _check_class_target(fn, input, target, ignore_index)
    x2, t1 = _classes_last(input, target)
    loss = NLLLoss.apply(x2, t1, weight, int(ignore_index), reduction)
    if reduction == "none":
        loss = loss.reshape(target.shape)
    return loss


# ------------------------------------------------------------ regression
@autocast_policy.float32
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """(input - target)^2, reduced. With weight (input's shape), 'mean' is
    sum(w * err) / sum(w), as in PyTorch."""
    fn = "mse_loss"
    check_float(input, "input", fn)
    check_tensor(target, "target", fn)
    reduction = reduction_from_legacy(size_average, reduce, reduction)
    check_reduction(reduction, fn)
    if target.shape != input.shape:
        broadcast_shapes(input.shape, target.shape)  # a clear error if they can't be broadcast at all
        warnings.warn(f"mse_loss(): target of shape {tuple(target.shape)} differs from input of shape "
                      f"{tuple(input.shape)}; "
                      f"they are broadcast, which is likely not what you want", stacklevel=2)
    check_same_device(fn, input, target=target, weight=weight)
    diff = input - target
    err = diff * diff
    if weight is None:
        return reduce_loss(err, reduction)
    check_tensor(weight, "weight", fn)
    if weight.shape != input.shape:
        raise ValueError(f"mse_loss(): weight of shape {tuple(weight.shape)} must have the input's shape "
                         f"{tuple(input.shape)}")
    err = err * weight
    if reduction == "mean":
        return err.sum() / weight.sum()
    return reduce_loss(err, reduction)


# ------------------------------------------------------------ binary
_LOG_FLOOR = -100.0  # PyTorch clamps log(x) and log(1 - x) here, so a saturated input gives 100, not inf
_BCE_EPS = float(np.float32(1e-12))  # PyTorch's floor of x (1 - x) in the gradient (a C float)


class BinaryCrossEntropy(Function):
    """-(t log x + (1 - t) log(1 - x)) with both logs clamped at -100.
    d/dx = (x - t) / max(x (1 - x), 1e-12);  d/dt = -logit(x) = log(1 - x) - log(x),
    not clamped (infinite at 0 and 1), exactly as PyTorch."""

    @staticmethod
    def forward(ctx, x, t):
        xp = ctx.xp
        log_x = xp.maximum(xp.log(x), _LOG_FLOOR)
        log_1mx = xp.maximum(xp.log1p(-x), _LOG_FLOOR)
        ctx.save_for_backward(x, t)
        return (t - 1) * log_1mx - t * log_x

    @staticmethod
    def backward(ctx, grad):
        x, t = ctx.saved
        xp = ctx.xp
        gx = gt = None
        if ctx.needs_input_grad[0]:
            gx = grad * (x - t) / xp.maximum((1 - x) * x, x.dtype.type(_BCE_EPS))
        if ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore"):
                gt = -grad * xp.log(x / (1 - x))
        return gx, gt


def _check_binary_target(fn, input, target, message):
    check_tensor(target, "target", fn)
    if target.shape != input.shape:
        raise ValueError(f"{fn}(): {message}: target of shape {tuple(target.shape)}, input of shape "
                         f"{tuple(input.shape)}")
    if not target.dtype.is_floating_point:
        raise TypeError(f"{fn}(): target must be a floating point tensor (probabilities), got {target.dtype}")
    return target if target.dtype is input.dtype else target.to(input.dtype)


def _apply_weight(fn, loss, weight):
    if weight is None:
        return loss
    check_tensor(weight, "weight", fn)
    try:
        broadcast_shapes(weight.shape, loss.shape)
    except ValueError:
        raise ValueError(f"{fn}(): weight of shape {tuple(weight.shape)} can't be broadcast to the input's shape "
                         f"{tuple(loss.shape)}") from None
    return loss * weight


@autocast_policy.float32
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """Binary cross-entropy of probabilities input (in [0, 1]) and target of the same shape."""
    fn = "binary_cross_entropy"
    check_float(input, "input", fn)
    target = _check_binary_target(fn, input, target, "target and input must have the same shape")
    reduction = reduction_from_legacy(size_average, reduce, reduction)
    check_reduction(reduction, fn)
    check_same_device(fn, input, target=target, weight=weight)
    if input._backend.name == "cpu" and input.numel():
        # checked on the CPU only: on the GPU it would synchronise every step
        x = input._data
        if not ((x >= 0) & (x <= 1)).all():
            raise ValueError(f"{fn}(): all elements of input should be between 0 and 1 (apply sigmoid first, or "
                             f"use binary_cross_entropy_with_logits)")
    loss = BinaryCrossEntropy.apply(input, target)
    return reduce_loss(_apply_weight(fn, loss, weight), reduction)


class BinaryCrossEntropyWithLogits(Function):
    """(1 - t) x + l * softplus(-x) with l = 1 + (pos_weight - 1) t, where
    softplus(-x) = log1p(exp(-|x|)) + max(-x, 0) never overflows.
    d/dx = l * sigmoid(x) - pos_weight * t;  d/dt = (pos_weight - 1) softplus(-x) - x;
    d/dpos_weight = t * softplus(-x)."""

    @staticmethod
    def forward(ctx, x, t, pos_weight):
        xp = ctx.xp
        sp = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)
        ctx.save_for_backward(x, t, pos_weight)
        if pos_weight is None:
            return (1 - t) * x + sp
        return (1 - t) * x + (1 + (pos_weight - 1) * t) * sp

    @staticmethod
    def backward(ctx, grad):
        x, t, pw = ctx.saved
        xp = ctx.xp
        need_x, need_t, need_pw = ctx.needs_input_grad
        sp = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0) if need_t or need_pw else None
        gx = gt = gpw = None
        if need_x:
            s = ctx.backend.sigmoid(contiguous(xp, x))
            gx = grad * (s - t) if pw is None else grad * ((1 + (pw - 1) * t) * s - pw * t)
        if need_t:
            gt = -grad * x if pw is None else grad * ((pw - 1) * sp - x)
        if need_pw:
            gpw = grad * t * sp  # summed to pos_weight's shape by the engine
        return gx, gt, gpw


@autocast_policy.float32
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """sigmoid + binary cross-entropy in one numerically stable step, on raw logits.
    pos_weight (broadcast against the input, e.g. one per class) weighs the positive term."""
    fn = "binary_cross_entropy_with_logits"
    check_float(input, "input", fn)
    target = _check_binary_target(fn, input, target, "target size must be the same as input size")
    reduction = reduction_from_legacy(size_average, reduce, reduction)
    check_reduction(reduction, fn)
    check_same_device(fn, input, target=target, weight=weight, pos_weight=pos_weight)
    if pos_weight is not None:
        check_tensor(pos_weight, "pos_weight", fn)
        try:
            if broadcast_shapes(pos_weight.shape, input.shape) != input.shape:
                raise ValueError
        except ValueError:
            raise ValueError(f"{fn}(): pos_weight of shape {tuple(pos_weight.shape)} can't be broadcast to the input's "
                             f"shape {tuple(input.shape)}") from None
        check_same_dtype(fn, input, pos_weight=pos_weight)
    loss = BinaryCrossEntropyWithLogits.apply(input, target, pos_weight)
    return reduce_loss(_apply_weight(fn, loss, weight), reduction)

