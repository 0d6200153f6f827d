"""Shape ops: views that share storage, and joins/splits/padding that copy."""
import itertools

from .. import memory_formats as formats
from ..autograd.function import Function
from .util import norm_dim

__all__ = ["reshape", "view", "flatten", "unflatten", "squeeze", "unsqueeze", "transpose", "permute", "expand",
           "broadcast_to", "contiguous", "clone", "cat", "concatenate", "stack", "split", "chunk", "narrow", "pad",
           "flip"]


def _resolve_shape(shape, numel):
    """Fill in a single -1 and check the element count, naming both shapes."""
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"only one dimension can be inferred (-1) in shape {shape}")
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if -1 in shape:
        if known == 0 or numel % known:
            raise ValueError(f"shape {shape} is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise ValueError(f"shape {shape} is invalid for input of size {numel}")
    return shape


class Reshape(Function):
    is_view = True

    @staticmethod
    def forward(ctx, x, shape):
        ctx.in_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.in_shape), None


def _shape_args(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape


def reshape(x, *shape):
    return Reshape.apply(x, _resolve_shape(_shape_args(shape), x.numel()))


def view(x, *shape):
    """Like reshape, but refuses to copy: the result must share storage."""
    shape = _resolve_shape(_shape_args(shape), x.numel())
    out = Reshape.apply(x, shape)
    if out.numel() and not x._backend.xp.shares_memory(out._data, x._data):
        raise RuntimeError(f"view size {shape} is not compatible with input of shape {tuple(x.shape)} and strides "
                           f"{x.stride()}: use .reshape(...) instead")
    return out


def flatten(x, start_dim=0, end_dim=-1):
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = norm_dim(start_dim, x.ndim), norm_dim(end_dim, x.ndim)
    return reshape(x, x.shape[:s] + (-1,) + x.shape[e + 1:])


def unflatten(x, dim, sizes):
    d = norm_dim(dim, x.ndim)
    return reshape(x, x.shape[:d] + tuple(sizes) + x.shape[d + 1:])


def squeeze(x, dim=None):
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    dims = {norm_dim(d, x.ndim) for d in ((dim,) if isinstance(dim, int) else dim)}
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1)))


def unsqueeze(x, dim):
    d = norm_dim(dim, x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


class Permute(Function):
    is_view = True

    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        inverse = [0] * len(ctx.dims)
        for i, d in enumerate(ctx.dims):
            inverse[d] = i
        return grad.transpose(inverse), None


def permute(x, *dims):
    dims = tuple(norm_dim(d, x.ndim) for d in _shape_args(dims))
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: {dims} is not a permutation of the {x.ndim} dimensions of shape {tuple(x.shape)}")
    return Permute.apply(x, dims)


def transpose(x, dim0, dim1):
    dims = list(range(x.ndim))
    if x.ndim == 0:
        return x
    a, b = norm_dim(dim0, x.ndim), norm_dim(dim1, x.ndim)
    dims[a], dims[b] = dims[b], dims[a]
    return Permute.apply(x, tuple(dims))


class Expand(Function):
    is_view = True

    @staticmethod
    def forward(ctx, x, shape):
        return ctx.xp.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return grad, None  # the engine sums it back to the input's shape


def expand(x, *sizes):
    sizes = _shape_args(sizes)
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: the number of sizes {len(sizes)} is less than the tensor's dimensions {x.ndim}")
    shape = []
    for i, s in enumerate(sizes):
        old = x.shape[i - lead] if i >= lead else 1
        if s == -1:
            s = old
        if old != 1 and old != s:
            raise ValueError(f"expand: the size of dimension {i} ({old}) must match {s} (shape {tuple(x.shape)} to "
                             f"{tuple(sizes)})")
        shape.append(s)
    return Expand.apply(x, tuple(shape))


def broadcast_to(x, shape):
    return expand(x, *shape)


class Copy(Function):
    @staticmethod
    def forward(ctx, x, memory_format):
        # preserve_format keeps the layout of a dense input, as PyTorch's clone does
        keep = None if memory_format is formats.preserve_format else memory_format is formats.channels_last
        return ctx.backend.copy(x, channels_last=keep)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def contiguous(x, memory_format=formats.contiguous_format):
    """x itself when it is laid out in `memory_format` (contiguous_format or channels_last), else a copy that is."""
    formats.check(memory_format, x.ndim, "contiguous")
    return x if x.is_contiguous(memory_format) else Copy.apply(x, memory_format)


def clone(x, memory_format=formats.preserve_format):
    formats.check(memory_format, x.ndim, "clone")
    return Copy.apply(x, memory_format)


class Flip(Function):
    """A reversed copy (PyTorch's flip copies, so writing to it leaves the input alone)."""

    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        return ctx.xp.flip(x, dims).copy()

    @staticmethod
    def backward(ctx, grad):
        return ctx.xp.flip(grad, ctx.dims), None


def flip(x, dims):
    return Flip.apply(x, tuple(sorted({norm_dim(d, x.ndim) for d in ((dims,) if isinstance(dims, int) else dims)})))


class Cat(Function):
    @staticmethod
    def forward(ctx, dim, *xs):
        ctx.dim = dim
        ctx.sizes = [x.shape[dim] for x in xs]
        return ctx.xp.concatenate(xs, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        return (None, *ctx.xp.split(grad, list(itertools.accumulate(ctx.sizes))[:-1], axis=ctx.dim))


def _check_join(tensors, name):
    if not isinstance(tensors, (list, tuple)) or not tensors:
        raise ValueError(f"{name}() expects a non-empty list of tensors")
    from .util import as_operands
    tensors, _ = as_operands(*tensors)
    return tensors


def cat(tensors, dim=0):
    tensors = _check_join(tensors, "cat")
    d = norm_dim(dim, tensors[0].ndim)
    ref = tensors[0].shape
    for t in tensors:
        if t.ndim != len(ref) or any(a != b for i, (a, b) in enumerate(zip(t.shape, ref)) if i != d):
            raise ValueError(f"cat: sizes of tensors must match except in dimension {d}; got shapes "
                             f"{[tuple(x.shape) for x in tensors]}")
    return Cat.apply(d, *tensors)


concatenate = cat


def stack(tensors, dim=0):
    tensors = _check_join(tensors, "stack")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack expects each tensor to be equal size, got shapes {[tuple(t.shape) for t in tensors]}")
    d = norm_dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(t, d) for t in tensors], d)


def narrow(x, dim, start, length):
    from .indexing import getitem
    d = norm_dim(dim, x.ndim)
    return getitem(x, (slice(None),) * d + (slice(start, start + length),))


def split(x, split_size_or_sections, dim=0):
    d = norm_dim(dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        sizes = [min(split_size_or_sections, n - i) for i in range(0, n, split_size_or_sections)]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(f"split sizes {sizes} don't add up to the size {n} of dimension {d}")
    out, start = [], 0
    for s in sizes:
        out.append(narrow(x, d, start, s))
        start += s
    return tuple(out)


def chunk(x, chunks, dim=0):
    n = x.shape[norm_dim(dim, x.ndim)]
    return split(x, -(-n // chunks), dim)


class Pad(Function):
    @staticmethod
    def forward(ctx, x, widths, value):
        ctx.slices = tuple(slice(lo, lo + s) for (lo, _), s in zip(widths, x.shape))
        return ctx.xp.pad(x, widths, constant_values=value)

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.slices], None, None


def pad(x, pad, mode="constant", value=0):
    """PyTorch's order: (left, right) of the last dim, then of the one before..."""
    if mode != "constant":
        raise NotImplementedError(f"pad mode {mode!r}: only 'constant' is supported")
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad must have an even length of at most 2 * ndim ({2 * x.ndim}), got {len(pad)}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        lo, hi = pad[2 * i], pad[2 * i + 1]
        if lo < 0 or hi < 0:
            raise ValueError("negative padding is not supported")
        widths[x.ndim - 1 - i] = (lo, hi)
    return Pad.apply(x, tuple(widths), value)

