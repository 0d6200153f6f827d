"""Reductions over dimensions: sum, mean, max/min, var/std, logsumexp, prod."""
from collections import namedtuple

import numpy as np

from .. import dtypes
from ..autograd.function import Function
from ..tensor import Tensor
from . import autocast_policy
from .util import norm_dim, norm_dims, wide

__all__ = ["sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin", "var", "std", "logsumexp", "prod",
           "all", "any", "cumsum", "std_mean", "var_mean"]

values_indices = namedtuple("values_indices", ["values", "indices"])


def _expand_back(grad, shape, dims, keepdim):
    """Reinsert reduced dimensions so a gradient broadcasts against the input."""
    if dims is None:
        return grad.reshape((1,) * len(shape))
    if not keepdim:
        for d in dims:
            grad = grad.reshape(grad.shape[:d] + (1,) + grad.shape[d:])
    return grad


class Sum(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.args = (x.shape, dims, keepdim)
        return x.sum(axis=dims, keepdims=keepdim, dtype=dtypes.sum_dtype(x.dtype)).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        shape, dims, keepdim = ctx.args
        return ctx.xp.broadcast_to(_expand_back(grad, shape, dims, keepdim), shape), None, None


def _int64_if_integral(x, dtype):
    """PyTorch sums and multiplies bools and integers as int64 (unless told a dtype)."""
    if dtype is not None:
        return x.to(dtype)
    return x.to(dtypes.int64) if x.dtype.category < 2 else x


@autocast_policy.float32
def sum(x, dim=None, keepdim=False, dtype=None):
    x = _int64_if_integral(x, dtype)
    return Sum.apply(x, norm_dims(dim, x.ndim), keepdim)


def mean(x, dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        x = x.to(dtype)
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"mean(): could not infer output dtype; input dtype {x.dtype} is not floating point, "
                           f"pass dtype=")
    return Mean.apply(x, norm_dims(dim, x.ndim), keepdim)


class Mean(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.args = (x.shape, dims, keepdim)
        return x.mean(axis=dims, keepdims=keepdim, dtype=dtypes.sum_dtype(x.dtype)).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        shape, dims, keepdim = ctx.args
        count = _prod_sizes(shape, range(len(shape)) if dims is None else dims)
        g = (wide(grad) / count).astype(grad.dtype, copy=False)
        return ctx.xp.broadcast_to(_expand_back(g, shape, dims, keepdim), shape), None, None


def _prod_sizes(shape, dims):
    n = 1
    for d in dims:
        n *= shape[d]
    return n


class Extremum(Function):
    """max/min over all elements (ties share the gradient) or over dims (amax)."""

    @staticmethod
    def forward(ctx, x, dims, keepdim, is_max):
        out = x.max(axis=dims, keepdims=True) if is_max else x.min(axis=dims, keepdims=True)
        ctx.save_for_backward(x, out)
        ctx.args = (dims, keepdim)
        return out if keepdim else out.reshape(tuple(s for i, s in enumerate(x.shape)
                                                     if dims is not None and i not in dims))

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved
        dims, keepdim = ctx.args
        mask = (x == out).astype(grad.dtype)
        mask /= mask.sum(axis=dims, keepdims=True)
        return _expand_back(grad, x.shape, dims, keepdim) * mask, None, None, None


class IndexedExtremum(Function):
    """max/min along one dim returning (values, indices); the gradient goes to the index."""

    @staticmethod
    def forward(ctx, x, dim, keepdim, is_max):
        xp = ctx.xp
        idx = x.argmax(axis=dim) if is_max else x.argmin(axis=dim)
        idx = xp.expand_dims(idx, dim)
        values = xp.take_along_axis(x, idx, axis=dim)
        ctx.save_for_backward(idx)
        ctx.args = (x.shape, dim)
        if not keepdim:
            values, idx = values.squeeze(dim), idx.squeeze(dim)
        return values, idx.astype("int64")

    @staticmethod
    def backward(ctx, grad, _grad_idx):
        (idx,) = ctx.saved
        shape, dim = ctx.args
        xp = ctx.xp
        picked = xp.arange(shape[dim]).reshape((-1,) + (1,) * (len(shape) - dim - 1)) == idx
        return xp.where(picked, grad.reshape(idx.shape), 0).astype(grad.dtype, copy=False), None, None, None


def _extremum(x, dim, keepdim, is_max):
    if x.numel() == 0:
        raise RuntimeError(f"{'max' if is_max else 'min'}(): expected a non-empty tensor")
    if dim is None:
        return Extremum.apply(x, None, False, is_max)
    if x.ndim == 0:  # PyTorch takes dim 0 of a 0-d tensor: its one element, at index 0
        x, keepdim = x.reshape(1), False
    out = IndexedExtremum.apply(x, norm_dim(dim, x.ndim), keepdim, is_max)
    return values_indices(*out)


def max(x, dim=None, keepdim=False):
    if isinstance(dim, Tensor):
        from .elementwise import maximum
        return maximum(x, dim)
    return _extremum(x, dim, keepdim, True)


def min(x, dim=None, keepdim=False):
    if isinstance(dim, Tensor):
        from .elementwise import minimum
        return minimum(x, dim)
    return _extremum(x, dim, keepdim, False)


def amax(x, dim=None, keepdim=False):
    return Extremum.apply(x, norm_dims(dim, x.ndim), keepdim, True)


def amin(x, dim=None, keepdim=False):
    return Extremum.apply(x, norm_dims(dim, x.ndim), keepdim, False)


def _arg(x, dim, keepdim, name):
    xp = x._backend.xp
    if x.ndim == 0:  # the one element is at index 0
        if dim is not None:
            norm_dim(dim, 0)  # still reject a dim a 0-d tensor doesn't have
        return Tensor._wrap(xp.zeros((), dtype="int64"), x._backend)
    if dim is None:
        out = getattr(xp, name)(x._data)
        out = out.reshape((1,) * x.ndim) if keepdim else out
    else:
        out = getattr(xp, name)(x._data, axis=norm_dim(dim, x.ndim), keepdims=keepdim)
    return Tensor._wrap(xp.asarray(out, dtype="int64"), x._backend)


def argmax(x, dim=None, keepdim=False):
    return _arg(x, dim, keepdim, "argmax")


def argmin(x, dim=None, keepdim=False):
    return _arg(x, dim, keepdim, "argmin")


class Var(Function):
    @staticmethod
    def forward(ctx, x, dims, correction, keepdim):
        xw = wide(x)
        m = xw.mean(axis=dims, keepdims=True)
        n = x.size if dims is None else _prod_sizes(x.shape, dims)
        ctx.save_for_backward(x, m)
        ctx.args = (dims, keepdim, n - correction)
        return (((xw - m) ** 2).sum(axis=dims, keepdims=keepdim) / (n - correction)).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, m = ctx.saved
        dims, keepdim, denom = ctx.args
        g = _expand_back(grad, x.shape, dims, keepdim) * (2 * (wide(x) - m) / denom)
        return g.astype(grad.dtype, copy=False), None, None, None


def var(x, dim=None, unbiased=None, keepdim=False, correction=None):
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"var/std need a floating point tensor, got {x.dtype}")
    if correction is None:
        correction = 0 if unbiased is False else 1
    return Var.apply(x, norm_dims(dim, x.ndim), correction, keepdim)


def std(x, dim=None, unbiased=None, keepdim=False, correction=None):
    from .elementwise import sqrt
    return sqrt(var(x, dim, unbiased, keepdim, correction))


class LogSumExp(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        xp, xw = ctx.xp, wide(x)
        m = xw.max(axis=dims, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        out = xp.log(xp.exp(xw - m).sum(axis=dims, keepdims=True)) + m
        ctx.save_for_backward(x, out)
        ctx.args = (dims, keepdim)
        out = out if keepdim else out.reshape(tuple(s for i, s in enumerate(x.shape)
                                                    if dims is not None and i not in dims))
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved
        dims, keepdim = ctx.args
        g = _expand_back(grad, x.shape, dims, keepdim) * ctx.xp.exp(wide(x) - out)
        return g.astype(grad.dtype, copy=False), None, None


@autocast_policy.float32
def logsumexp(x, dim, keepdim=False):
    if not x.dtype.is_floating_point:
        x = x.to(dtypes.get_default_dtype())
    return LogSumExp.apply(x, norm_dims(dim, x.ndim), keepdim)


class Prod(Function):
    @staticmethod
    def forward(ctx, x, dim, keepdim):
        ctx.save_for_backward(x)
        ctx.args = (dim, keepdim)
        return wide(x).prod(axis=dim, keepdims=keepdim).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        dim, keepdim = ctx.args
        xp, x, dtype = ctx.xp, wide(x), grad.dtype
        # d prod / d x_i is the product of all the others: the exclusive prefix product times
        # the exclusive suffix product along the reduced axis (no division, so zeros are fine)
        xs = xp.moveaxis(x.reshape(-1) if dim is None else x, 0 if dim is None else dim, -1)
        ones = xp.ones(xs.shape[:-1] + (1,), dtype=xs.dtype)
        before = xp.cumprod(xp.concatenate([ones, xs[..., :-1]], axis=-1), axis=-1)
        after = xp.cumprod(xp.concatenate([ones, xs[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
        others = xp.moveaxis(before * after, -1, 0 if dim is None else dim).reshape(x.shape)
        g = _expand_back(wide(grad), x.shape, None if dim is None else (dim,), keepdim) * others
        return g.astype(dtype, copy=False), None, None


@autocast_policy.float32
def prod(x, dim=None, keepdim=False, dtype=None):
    x = _int64_if_integral(x, dtype)
    return Prod.apply(x, None if dim is None or x.ndim == 0 else norm_dim(dim, x.ndim), keepdim)


@autocast_policy.float32
def cumsum(x, dim, dtype=None):
    x = _int64_if_integral(x, dtype)
    d = norm_dim(dim, x.ndim)
    return _CumSum.apply(x.reshape(1), 0).reshape(()) if x.ndim == 0 else _CumSum.apply(x, d)


class _CumSum(Function):
    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        return ctx.xp.cumsum(wide(x), axis=dim).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        return xp.flip(xp.cumsum(xp.flip(wide(grad), axis=ctx.dim), axis=ctx.dim), axis=ctx.dim).astype(grad.dtype), None


def all(x, dim=None, keepdim=False):
    return Tensor._wrap(x._backend.xp.asarray(x._data.all(axis=norm_dims(dim, x.ndim), keepdims=keepdim)), x._backend)


def any(x, dim=None, keepdim=False):
    return Tensor._wrap(x._backend.xp.asarray(x._data.any(axis=norm_dims(dim, x.ndim), keepdims=keepdim)), x._backend)


def var_mean(x, dim=None, unbiased=None, keepdim=False, correction=None):
    return var(x, dim, unbiased, keepdim, correction), mean(x, dim, keepdim)


def std_mean(x, dim=None, unbiased=None, keepdim=False, correction=None):
    return std(x, dim, unbiased, keepdim, correction), mean(x, dim, keepdim)
