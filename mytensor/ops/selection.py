"""Ops that pick elements by rank or position: sort, argsort, topk, tril, triu.

sort and topk compute their indices without autograd (an argsort on the device) and
take the values with `gather`, whose backward scatters the gradient to where each
value came from; nothing is read back to the host.
"""
from ..autograd.function import Function
from ..tensor import Tensor
from .util import norm_dim
from .indexing import gather
from .reduction import values_indices

__all__ = ["sort", "argsort", "topk", "tril", "triu"]


def _argsort(x, dim, descending, stable=True):
    """Indices that sort x along dim; descending keeps equal elements in their order, as PyTorch does."""
    xp, a = x._backend.xp, x._data
    if descending:
        a = -a.astype("int64") if a.dtype.kind in "biu" else -a
    return Tensor._wrap(xp.argsort(a, axis=dim, kind="stable" if stable else None).astype("int64", copy=False),
                        x._backend)


def sort(x, dim=-1, descending=False, stable=False):
    """(values, indices) along dim; ties keep their input order (a stable sort)."""
    if x.ndim == 0:
        return values_indices(x * 1, Tensor._wrap(x._backend.xp.zeros((), "int64"), x._backend))
    d = norm_dim(dim, x.ndim)
    idx = _argsort(x, d, descending)
    return values_indices(gather(x, d, idx), idx)


def argsort(x, dim=-1, descending=False, stable=False):
    if x.ndim == 0:
        return Tensor._wrap(x._backend.xp.zeros((), "int64"), x._backend)
    return _argsort(x, norm_dim(dim, x.ndim), descending)


def topk(x, k, dim=-1, largest=True, sorted=True):
    """The k largest (or smallest) values along dim and their indices, largest first."""
    d = norm_dim(dim, x.ndim) if x.ndim else 0
    size = x.shape[d] if x.ndim else 1
    if not 0 <= k <= size:
        raise ValueError(f"topk(): k ({k}) is out of range for dimension {d} of size {size} (shape {tuple(x.shape)})")
    if x.ndim == 0:
        return sort(x)
    idx = _argsort(x, d, largest)
    idx = Tensor._wrap(idx._data[(slice(None),) * d + (slice(0, k),)], x._backend)
    return values_indices(gather(x, d, idx), idx)


class Triangle(Function):
    """The lower (tril) or upper (triu) triangle of the last two dims; the rest zeroed, gradient too."""

    @staticmethod
    def forward(ctx, x, diagonal, lower):
        ctx.args = (diagonal, lower)
        return ctx.xp.tril(x, diagonal) if lower else ctx.xp.triu(x, diagonal)

    @staticmethod
    def backward(ctx, grad):
        diagonal, lower = ctx.args
        return (ctx.xp.tril(grad, diagonal) if lower else ctx.xp.triu(grad, diagonal)), None, None


def _triangle(x, diagonal, lower):
    if x.ndim < 2:
        raise ValueError(f"{'tril' if lower else 'triu'}: expected a tensor of at least 2 dimensions, got shape "
                         f"{tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        x = x.detach()
    return Triangle.apply(x, int(diagonal), lower)


def tril(x, diagonal=0):
    return _triangle(x, diagonal, True)


def triu(x, diagonal=0):
    return _triangle(x, diagonal, False)
