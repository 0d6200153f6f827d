"""Reductions over dimensions: sum, mean, max/min, var/std, logsumexp, prod."""
from collections import namedtuple

from .. import dtypes
from ..autograd.function import Function
from ..tensor import Tensor
from ._util import norm_dim, norm_dims

__all__ = ["sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin", "var", "std", "logsumexp", "prod",
           "all", "any", "cumsum"]

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
        return x.sum(axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        shape, dims, keepdim = ctx.args
        return ctx.xp.broadcast_to(_expand_back(grad, shape, dims, keepdim), shape), None, None


def sum(x, dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        x = x.to(dtype)
    elif x.dtype.category < 2:
        x = x.to(dtypes.int64)  # PyTorch sums bools and integers as int64
    return Sum.apply(x, norm_dims(dim, x.ndim), keepdim)


def mean(x, dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        x = x.to(dtype)
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"mean(): could not infer output dtype; input dtype {x.dtype} is not floating point, "
                           f"pass dtype=")
    dims = norm_dims(dim, x.ndim)
    count = x.numel() if dims is None else _prod_sizes(x.shape, dims)
    return Sum.apply(x, dims, keepdim) / count


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
        g = xp.zeros(shape, dtype=grad.dtype)
        xp.put_along_axis(g, idx, grad.reshape(idx.shape), axis=dim)
        return g, None, None, None


def _extremum(x, dim, keepdim, is_max):
    if x.numel() == 0:
        raise RuntimeError(f"{'max' if is_max else 'min'}(): expected a non-empty tensor")
    if dim is None:
        return Extremum.apply(x, None, False, is_max)
    if isinstance(dim, Tensor):
        raise TypeError("max(a, b) with two tensors is maximum(a, b)")
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
        m = x.mean(axis=dims, keepdims=True)
        n = x.size if dims is None else _prod_sizes(x.shape, dims)
        ctx.save_for_backward(x, m)
        ctx.args = (dims, keepdim, n - correction)
        return ((x - m) ** 2).sum(axis=dims, keepdims=keepdim) / x.dtype.type(n - correction)

    @staticmethod
    def backward(ctx, grad):
        x, m = ctx.saved
        dims, keepdim, denom = ctx.args
        return _expand_back(grad, x.shape, dims, keepdim) * (2 * (x - m) / x.dtype.type(denom)), None, None, None


def var(x, dim=None, unbiased=None, keepdim=False, correction=None):
    if correction is None:
        correction = 0 if unbiased is False else 1
    return Var.apply(x, norm_dims(dim, x.ndim), correction, keepdim)


def std(x, dim=None, unbiased=None, keepdim=False, correction=None):
    from .elementwise import sqrt
    return sqrt(var(x, dim, unbiased, keepdim, correction))


class LogSumExp(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        xp = ctx.xp
        m = x.max(axis=dims, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        out = xp.log(xp.exp(x - m).sum(axis=dims, keepdims=True)) + m
        ctx.save_for_backward(x, out)
        ctx.args = (dims, keepdim)
        return out if keepdim else out.reshape(tuple(s for i, s in enumerate(x.shape)
                                                     if dims is not None and i not in dims))

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved
        dims, keepdim = ctx.args
        return _expand_back(grad, x.shape, dims, keepdim) * ctx.xp.exp(x - out), None, None


def logsumexp(x, dim, keepdim=False):
    return LogSumExp.apply(x, norm_dims(dim, x.ndim), keepdim)


class Prod(Function):
    @staticmethod
    def forward(ctx, x, dim, keepdim):
        ctx.save_for_backward(x)
        ctx.args = (dim, keepdim)
        return x.prod(axis=dim, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        dim, keepdim = ctx.args
        xp = ctx.xp
        flat = dim is None
        xs = x.reshape(-1) if flat else x
        axis = 0 if flat else dim
        # product of all the others = exclusive prefix product * exclusive suffix product (safe with zeros)
        ones = xp.ones_like(xp.take(xs, [0], axis=axis))
        before = xp.cumprod(xp.concatenate([ones, xp.take(xs, range(xs.shape[axis] - 1), axis=axis)], axis=axis),
                            axis=axis)
        rev = xp.flip(xs, axis=axis)
        after = xp.flip(xp.cumprod(xp.concatenate([ones, xp.take(rev, range(xs.shape[axis] - 1), axis=axis)],
                                                  axis=axis), axis=axis), axis=axis)
        others = (before * after).reshape(x.shape)
        return _expand_back(grad, x.shape, None if flat else (dim,), keepdim) * others, None, None


def prod(x, dim=None, keepdim=False):
    return Prod.apply(x, None if dim is None else norm_dim(dim, x.ndim), keepdim)


def cumsum(x, dim):
    return _CumSum.apply(x, norm_dim(dim, x.ndim))


class _CumSum(Function):
    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        return ctx.xp.cumsum(x, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        return xp.flip(xp.cumsum(xp.flip(grad, axis=ctx.dim), axis=ctx.dim), axis=ctx.dim), None


def all(x, dim=None):
    return Tensor._wrap(x._backend.xp.all(x._data, axis=dim), x._backend)


def any(x, dim=None):
    return Tensor._wrap(x._backend.xp.any(x._data, axis=dim), x._backend)
