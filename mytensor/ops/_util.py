"""Helpers shared by the op modules."""
from .. import dtypes
from ..tensor import Tensor


def unbroadcast(grad, shape):
    """Sum a gradient over the dimensions broadcasting added or stretched."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, s in enumerate(shape) if s == 1 and grad.shape[i + extra] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def broadcast_shapes(*shapes):
    """Like NumPy's rule, with an error that names the shapes."""
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        sizes = {s[i - ndim + len(s)] for s in shapes if i - ndim + len(s) >= 0} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be broadcast together "
                             f"(dimension {i - ndim} has sizes {sorted(sizes)})")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def as_operands(*args):
    """Bring tensors and Python numbers to a common dtype, PyTorch's way.

    Tensors are cast to the promoted dtype (a differentiable cast); numbers stay
    Python numbers so NumPy/CuPy treat them as weakly typed."""
    for a in args:
        if not isinstance(a, (Tensor, bool, int, float)):
            raise TypeError(f"expected a tensor or a number, got {type(a).__name__}")
    dtype = dtypes.result_type(*args)
    out = [a.to(dtype) if isinstance(a, Tensor) and a.dtype is not dtype else a for a in args]
    return out, dtype


def norm_dim(dim, ndim):
    """A dimension index in [0, ndim), with an error naming the valid range."""
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not lo <= dim <= hi:
        raise IndexError(f"dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")
    return dim % max(ndim, 1)


def norm_dims(dim, ndim):
    """None (all) or a tuple of non-negative dims."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(sorted(norm_dim(d, ndim) for d in dims))
