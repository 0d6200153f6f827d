"""More of `torch`'s namespace, mostly composed from the core ops (their gradients come with them):
rounding, log1p/expm1, repeat/tile/roll, unbind/movedim, norms, comparisons of whole tensors.

Ops whose result has a data-dependent shape (`nonzero`, `masked_select`) and the whole-tensor
comparisons (`allclose`, `equal`) read values back, as they must; the rest do not.
"""
import math

from .. import dtypes
from ..autograd.function import Function
from ..backend import backend_of_array, get_backend
from ..tensor import Tensor
from . import autocast_policy
from .util import norm_dim, norm_dims
from .elementwise import abs, log, mul, sqrt
from .indexing import getitem
from .reduction import amax, sum
from .shape import expand, permute, reshape

__all__ = ["floor", "ceil", "round", "trunc", "log1p", "expm1", "log2", "log10", "repeat", "tile",
           "repeat_interleave", "roll", "unbind", "movedim", "swapaxes", "norm", "lerp", "allclose", "isclose",
           "equal", "numel", "is_tensor", "is_floating_point", "as_tensor", "nonzero", "argwhere", "masked_select",
           "clip"]


class _Rounding(Function):
    """Piecewise constant: the gradient is zero, as in PyTorch."""

    @staticmethod
    def forward(ctx, x, name, decimals):
        xp = ctx.xp
        if name == "round" and decimals:
            return xp.round(x, decimals)
        return getattr(xp, "rint" if name == "round" else name)(x)  # rint: halves to even, as torch.round

    @staticmethod
    def backward(ctx, grad):
        return ctx.xp.zeros_like(grad), None, None


def _rounding(name):
    def op(x, decimals=0):
        return x if not x.dtype.is_floating_point else _Rounding.apply(x, name, decimals)
    op.__name__ = name
    return op


floor, ceil, round, trunc = (_rounding(n) for n in ("floor", "ceil", "round", "trunc"))


class Log1p(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log1p(x)

    @staticmethod
    def backward(ctx, grad):
        return grad / (1 + ctx.saved[0])


class Expm1(Function):
    @staticmethod
    def forward(ctx, x):
        out = ctx.xp.expm1(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * (ctx.saved[0] + 1)


def _float(x):
    return x if x.dtype.is_floating_point else x.to(dtypes.get_default_dtype())


@autocast_policy.float32
def log1p(x):
    return Log1p.apply(_float(x))


@autocast_policy.float32
def expm1(x):
    return Expm1.apply(_float(x))


@autocast_policy.float32
def log2(x):
    return log(x) * (1 / math.log(2))


@autocast_policy.float32
def log10(x):
    return log(x) * (1 / math.log(10))


class Tile(Function):
    """Copies of x side by side; backward sums the copies' gradients."""

    @staticmethod
    def forward(ctx, x, reps):
        ctx.args = (x.shape, reps)
        return ctx.xp.tile(x, reps)

    @staticmethod
    def backward(ctx, grad):
        shape, reps = ctx.args
        shape = (1,) * (len(reps) - len(shape)) + tuple(shape)
        split = [d for r, s in zip(reps, shape) for d in (r, s)]
        return grad.reshape(split).sum(axis=tuple(range(0, 2 * len(reps), 2))).reshape(ctx.args[0]), None


def _sizes(sizes):
    return tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else tuple(sizes)


def repeat(x, *sizes):
    """PyTorch's `Tensor.repeat`: repeat along each dim (at least x.ndim sizes)."""
    sizes = _sizes(sizes)
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: number of repeat dims ({len(sizes)}) can not be smaller than the tensor's "
                         f"dimensions ({x.ndim})")
    return Tile.apply(x, sizes)


def tile(x, dims):
    dims = tuple(dims)
    return Tile.apply(x, (1,) * (x.ndim - len(dims)) + dims)


def repeat_interleave(x, repeats, dim=None):
    """Each element `repeats` times in a row, along dim (None: of the flattened tensor)."""
    if isinstance(repeats, Tensor):
        if repeats.numel() != 1:
            raise NotImplementedError("torch.repeat_interleave with a tensor of repeats: give an int")
        repeats = int(repeats.item())
    if dim is None:
        x, dim = reshape(x, -1), 0
    d = norm_dim(dim, x.ndim)
    shape = x.shape
    out = expand(reshape(x, shape[:d + 1] + (1,) + shape[d + 1:]), *(shape[:d + 1] + (repeats,) + shape[d + 1:]))
    return reshape(out, shape[:d] + (shape[d] * repeats,) + shape[d + 1:])


class Roll(Function):
    @staticmethod
    def forward(ctx, x, shifts, dims):
        ctx.args = (shifts, dims)
        return ctx.xp.roll(x, shifts, dims)

    @staticmethod
    def backward(ctx, grad):
        shifts, dims = ctx.args
        back = -shifts if isinstance(shifts, int) else tuple(-s for s in shifts)
        return ctx.xp.roll(grad, back, dims), None, None


def roll(x, shifts, dims=None):
    if dims is None:
        return reshape(Roll.apply(reshape(x, -1), shifts, 0), *x.shape)
    dims = norm_dim(dims, x.ndim) if isinstance(dims, int) else tuple(norm_dim(d, x.ndim) for d in dims)
    return Roll.apply(x, shifts if isinstance(shifts, int) else tuple(shifts), dims)


def unbind(x, dim=0):
    d = norm_dim(dim, x.ndim)
    return tuple(getitem(x, (slice(None),) * d + (i,)) for i in range(x.shape[d]))


def movedim(x, source, destination):
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    src, dst = [norm_dim(s, x.ndim) for s in src], [norm_dim(d, x.ndim) for d in dst]
    order = [d for d in range(x.ndim) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute(x, *order)


def swapaxes(x, axis0, axis1):
    from .shape import transpose
    return transpose(x, axis0, axis1)


@autocast_policy.float32
def norm(x, p="fro", dim=None, keepdim=False, dtype=None):
    """The vector p-norm over `dim` (all elements by default); 'fro' is the 2-norm."""
    if dtype is not None:
        x = x.to(dtype)
    x = _float(x)
    dims = norm_dims(dim, x.ndim)
    if p in ("fro", 2, 2.0):
        return sqrt(sum(mul(x, x), dims, keepdim))
    if p in (math.inf, float("inf"), "inf"):
        return amax(abs(x), dims, keepdim)
    if p == 1:
        return sum(abs(x), dims, keepdim)
    if isinstance(p, str):
        raise NotImplementedError(f"torch.norm(p={p!r}): only vector p-norms are supported")
    return sum(abs(x) ** p, dims, keepdim) ** (1 / p)


def lerp(start, end, weight):
    return start + weight * (end - start)


def clip(x, min=None, max=None):
    from .elementwise import clamp
    return clamp(x, min, max)


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    xp = a._backend.xp
    b_data = b._data if isinstance(b, Tensor) else b
    return Tensor._wrap(xp.isclose(a._data, b_data, rtol=rtol, atol=atol, equal_nan=equal_nan), a._backend)


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return bool(isclose(a, b, rtol, atol, equal_nan)._data.all())


def equal(a, b):
    return a.shape == b.shape and bool((a._data == b._data).all())


def numel(x):
    return x.numel()


def is_tensor(obj):
    return isinstance(obj, Tensor)


def is_floating_point(x):
    return x.dtype.is_floating_point


def as_tensor(data, dtype=None, device=None):
    """The tensor itself when it already has that dtype and device; a NumPy array shared on the
    CPU (None: the CPU) where the dtype matches, copied once to a GPU; a CuPy array shared on its
    GPU (as PyTorch shares `__cuda_array_interface__` memory); other data as `tensor`."""
    import numpy as np
    if isinstance(data, Tensor):
        return data.to(dtype=dtype, device=device)
    if isinstance(data, np.ndarray):
        backend = get_backend("cpu" if device is None else device)
        dtype = dtypes.get_dtype(data.dtype if dtype is None else dtype)
        return Tensor._wrap(backend.asarray(data, dtype.np), backend)
    if hasattr(data, "__cuda_array_interface__") and (device is None or get_backend(device) is backend_of_array(data)):
        dtype = dtypes.get_dtype(data.dtype if dtype is None else dtype)
        return Tensor._wrap(data.astype(dtype.np, copy=False), backend_of_array(data))
    return Tensor(data, dtype=dtype, device=device)


def nonzero(x, as_tuple=False):
    """Indices of the non-zero elements (their number is read back: the shape depends on it)."""
    xp = x._backend.xp
    idx = [Tensor._wrap(i.astype("int64"), x._backend) for i in xp.nonzero(x._data)]
    if as_tuple:
        return tuple(idx)
    return Tensor._wrap(xp.stack([i._data for i in idx], axis=1) if idx else xp.zeros((0, 0), "int64"), x._backend)


def argwhere(x):
    return nonzero(x)


def masked_select(x, mask):
    from .util import broadcast_shapes
    shape = broadcast_shapes(x.shape, mask.shape)
    return getitem(expand(x, *shape), expand(mask, *shape).contiguous())
