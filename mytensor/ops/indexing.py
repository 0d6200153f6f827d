"""Indexing: `x[...]` reads (views for basic indices), writes, gather and one-hot.

Backward of a read scatters the gradient back into a zero tensor of the input's
shape, *adding* where an integer index picks the same element twice.
"""
from .. import dtypes
from ..autograd.function import Function
from ..tensor import Tensor
from .util import norm_dim, wide

__all__ = ["getitem", "index_put", "gather", "index_select", "one_hot", "masked_fill", "scatter", "scatter_add"]


def _raw_index(index, backend):
    """Turn tensors inside an index into backend arrays, checking their type."""
    if isinstance(index, tuple):
        return tuple(_raw_index(i, backend) for i in index)
    if isinstance(index, Tensor):
        if index._backend is not backend:
            raise RuntimeError(f"indices are on {index.device} but the indexed tensor is on {backend.device}")
        if index.dtype.category == 2:
            raise IndexError(f"tensors used as indices must be long or bool, got {index.dtype}")
        return index._data
    if isinstance(index, list):
        return backend.asarray(index)
    return index


def _is_basic(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


class GetItem(Function):
    is_view = True  # for basic indices; advanced ones copy and shares_memory says so

    @staticmethod
    def forward(ctx, x, index):
        ctx.args = (x.shape, x.dtype, index)
        out = x[index]
        if _is_basic(index) and not isinstance(out, ctx.xp.ndarray):
            # NumPy gives a scalar copy for x[i] on a vector; a trailing ... makes it a 0-d view as in PyTorch
            out = x[(index if isinstance(index, tuple) else (index,)) + (Ellipsis,)]
        return out

    @staticmethod
    def backward(ctx, grad):
        shape, dtype, index = ctx.args
        xp = ctx.xp
        if _is_basic(index):
            g = xp.zeros(shape, dtype=grad.dtype)
            g[index] = grad
            return g, None
        g = xp.zeros(shape, dtype=wide(grad).dtype)
        xp.add.at(g, index, wide(grad))
        return g.astype(grad.dtype, copy=False), None


def getitem(x, index):
    raw = _raw_index(index, x._backend)
    try:
        return GetItem.apply(x, raw)
    except IndexError as e:
        raise IndexError(f"index {index!r} is invalid for a tensor of shape {tuple(x.shape)}: {e}") from None


class IndexPut(Function):
    """out = x with out[index] = value; the out-of-place form of `x[index] = value`."""

    @staticmethod
    def forward(ctx, x, value, index):
        out = x.copy()
        out[index] = value
        ctx.index = index
        return out

    @staticmethod
    def backward(ctx, grad):
        index = ctx.index
        gx = grad.copy()
        gx[index] = 0
        gv = grad[index] if ctx.needs_input_grad[1] else None  # summed to the value's shape by the engine
        return gx, gv, None


def index_put(x, index, value):
    raw = _raw_index(index, x._backend)
    if isinstance(value, Tensor):
        value = value.to(x.dtype)
    return IndexPut.apply(x, value, raw)


class Gather(Function):
    @staticmethod
    def forward(ctx, x, dim, index):
        ctx.args = (x.shape, dim)
        ctx.save_for_backward(index)
        # PyTorch lets the index be smaller than x in the other dims: read only that corner
        corner = tuple(slice(None) if d == dim else slice(0, s) for d, s in enumerate(index.shape))
        return ctx.xp.take_along_axis(x[corner], index, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        shape, dim = ctx.args
        (index,) = ctx.saved
        xp = ctx.xp
        g = xp.zeros(shape, dtype=wide(grad).dtype)
        # add, not assign: an index may repeat along dim
        full = [xp.arange(s).reshape([-1 if i == d else 1 for i in range(len(index.shape))])
                for d, s in enumerate(index.shape)]
        full[dim] = index
        xp.add.at(g, tuple(full), wide(grad))
        return g.astype(grad.dtype, copy=False), None, None


def gather(x, dim, index):
    if not isinstance(index, Tensor) or index.dtype is not dtypes.int64:
        raise TypeError("gather(): index must be an int64 tensor")
    d = norm_dim(dim, x.ndim)
    if index.ndim != x.ndim:
        raise ValueError(f"gather(): index has {index.ndim} dimensions but input has {x.ndim}")
    if any(i > s for k, (i, s) in enumerate(zip(index.shape, x.shape)) if k != d):
        raise ValueError(f"gather(): index of shape {tuple(index.shape)} is larger than input of shape "
                         f"{tuple(x.shape)} "
                         f"outside dimension {d}")
    return Gather.apply(x, d, index)


def _positions(xp, index, dim):
    """The full index tuple that puts element k of `index` at (k with dim replaced by index[k])."""
    full = [xp.arange(s).reshape([-1 if i == d else 1 for i in range(index.ndim)]) for d, s in enumerate(index.shape)]
    full[dim] = index
    return tuple(full)


class Scatter(Function):
    """out = x with out[..., index[k], ...] = src[k] (or += with add=True) along dim."""

    @staticmethod
    def forward(ctx, x, src, dim, index, add):
        xp = ctx.xp
        where = _positions(xp, index, dim)
        corner = tuple(slice(0, s) for s in index.shape)
        out = x.copy()
        values = src[corner] if xp.ndim(src) else src
        if add:
            xp.add.at(out, where, values)
        else:
            out[where] = values
        ctx.args = (where, corner, xp.shape(src), add)
        return out

    @staticmethod
    def backward(ctx, grad):
        where, corner, src_shape, add = ctx.args
        xp = ctx.xp
        gx = grad
        if not add and ctx.needs_input_grad[0]:
            gx = grad.copy()
            gx[where] = 0  # overwritten elements don't reach the output
        gs = None
        if ctx.needs_input_grad[1]:
            gs = xp.zeros(src_shape, dtype=grad.dtype)
            gs[corner] = grad[where]
        return gx, gs, None, None, None


def _scatter(x, dim, index, src, add, name):
    if not isinstance(index, Tensor) or index.dtype is not dtypes.int64:
        raise TypeError(f"{name}(): index must be an int64 tensor")
    d = norm_dim(dim, x.ndim)
    if index.ndim != x.ndim or (isinstance(src, Tensor) and src.ndim != x.ndim):
        raise ValueError(f"{name}(): index (shape {tuple(index.shape)}), src and input (shape {tuple(x.shape)}) "
                         f"must have the same number of dimensions")
    if any(i > s for k, (i, s) in enumerate(zip(index.shape, x.shape)) if k != d) or (
            isinstance(src, Tensor) and any(i > s for i, s in zip(index.shape, src.shape))):
        raise ValueError(f"{name}(): index of shape {tuple(index.shape)} is larger than src "
                         f"{tuple(src.shape) if isinstance(src, Tensor) else ''} or than input of shape "
                         f"{tuple(x.shape)} outside dimension {d}")
    if isinstance(src, Tensor):
        src = src.to(x.dtype)
    return Scatter.apply(x, src, d, index, add)


def scatter(x, dim, index, src=None, value=None, reduce=None):
    """PyTorch's scatter: `src` a tensor or a number (`value=` also names a number)."""
    if reduce is not None:
        raise NotImplementedError(f"torch.scatter(reduce={reduce!r}): use scatter_add (or scatter_reduce is not "
                                  f"supported)")
    return _scatter(x, dim, index, value if src is None else src, False, "scatter")


def scatter_add(x, dim, index, src):
    return _scatter(x, dim, index, src, True, "scatter_add")


def index_select(x, dim, index):
    d = norm_dim(dim, x.ndim)
    return getitem(x, (slice(None),) * d + (index,))


def masked_fill(x, mask, value):
    from .elementwise import where
    return where(mask, value, x) if isinstance(value, Tensor) else where(mask, Tensor(value, dtype=x.dtype,
                                                                                        device=x.device), x)


def one_hot(tensor, num_classes=-1):
    if tensor.dtype is not dtypes.int64:
        raise TypeError(f"one_hot is only applicable to int64 index tensors, got {tensor.dtype}")
    xp = tensor._backend.xp
    if tensor.numel() and int(tensor._data.min()) < 0:
        raise ValueError("one_hot: class values must be non-negative")
    if num_classes < 0:
        num_classes = int(tensor._data.max()) + 1 if tensor.numel() else 0
    elif tensor.numel() and int(tensor._data.max()) >= num_classes:
        raise ValueError(f"one_hot: class values must be smaller than num_classes ({num_classes})")
    out = (tensor._data[..., None] == xp.arange(num_classes)).astype("int64")
    return Tensor._wrap(out, tensor._backend)
