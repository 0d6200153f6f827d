"""Helpers for writing ops: broadcasting, operand promotion, dimension checks (the gradient of a
broadcast is the engine's: `autograd.engine.unbroadcast`). Shared by the op modules and by
nn.functional, whose Functions are ops too."""
import numpy as np

from .. import dtypes
from ..tensor import Tensor


def wide(arr):
    """16-bit floats in float32, as PyTorch computes them: their running sums and products lose
    precision (and CuPy has no bfloat16 scatter-add, product or cumulative sum); others as they are."""
    return arr.astype(np.float32) if dtypes.sum_dtype(getattr(arr, "dtype", None)) else arr


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


NUMBERS = (bool, int, float, np.bool_, np.integer, np.floating)  # what ops take besides tensors
OPERANDS = (Tensor, *NUMBERS)


def as_operands(*args):
    """Bring tensors and Python numbers to a common dtype, PyTorch's way.

    Tensors are cast to the promoted dtype (a differentiable cast); numbers stay
    Python numbers so NumPy/CuPy treat them as weakly typed. An integer that the
    integer result type can't hold wraps around (`uint8 - 2` is `uint8 + 254`), as
    in PyTorch, where NumPy would raise."""
    dtype = _one_float_dtype(args)
    if dtype is not None:
        return args, dtype
    for a in args:
        if not isinstance(a, OPERANDS):
            raise TypeError(f"expected a tensor or a number, got {type(a).__name__}")
    args = [a.item() if isinstance(a, np.generic) else a for a in args]  # NumPy scalars act as Python numbers
    dtype = dtypes.result_type(*args)
    out = []
    for a in args:
        if isinstance(a, Tensor):
            a = a.to(dtype)
        elif isinstance(a, int) and not isinstance(a, bool) and dtype.category == 1:
            a = int(np.array(a).astype(dtype.np))
        else:
            a = scalar_operand(a, dtype)
        out.append(a)
    return out, dtype


def _one_float_dtype(args):
    """The common case, promoted at a glance: tensors of one float dtype (bfloat16 aside, whose
    numbers need converting), with or without Python floats and ints. Else None."""
    dtype = None
    for a in args:
        if isinstance(a, Tensor):
            if dtype is None:
                dtype = a._data.dtype
            elif a._data.dtype != dtype:
                return None
        elif type(a) is not float and type(a) is not int:
            return None
    if dtype is None or dtype.kind != "f" or dtype == dtypes.bfloat16.np:
        return None
    return dtypes.from_numpy_dtype(dtype)


def scalar_operand(value, dtype):
    """A Python number as the operand of a `dtype` array. NumPy keeps float16 for a
    Python number, but bfloat16 (an extension type) would widen to float32: it gets
    a bfloat16 scalar."""
    if dtype is dtypes.bfloat16 and isinstance(value, (int, float)) and not isinstance(value, bool):
        return dtype.np.type(value)
    return value


def float_unary(fn):
    """A unary op of Function `fn` whose integer inputs are computed in the default float dtype."""
    def op(x):
        if not isinstance(x, Tensor):
            raise TypeError(f"{fn.__name__.lower()}() expects a tensor, got {type(x).__name__}")
        if x._data.dtype not in dtypes.FLOATING:
            x = x.to(dtypes.get_default_dtype())
        return fn.apply(x)
    op.__name__ = fn.__name__.lower()
    return op


def contiguous(xp, a):
    """A C-contiguous array (the kernels of every backend read that layout)."""
    return a if a.flags.c_contiguous else xp.ascontiguousarray(a)


def norm_dim(dim, ndim):
    """A dimension index in [0, ndim), with an error naming the valid range."""
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not lo <= dim <= hi:
        raise IndexError(f"dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")
    return dim % max(ndim, 1)


def norm_dims(dim, ndim):
    """None (all) or a sorted tuple of non-negative dims. As in PyTorch, an empty
    list of dims means all of them, and a 0-d tensor takes dim 0 or -1."""
    if dim is None:
        return None
    dims = tuple(sorted(norm_dim(d, ndim) for d in ((dim,) if isinstance(dim, int) else dim)))
    return dims if dims and ndim else None
