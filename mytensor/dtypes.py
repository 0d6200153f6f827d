"""Data types and PyTorch's type-promotion rules.

A `DType` wraps a NumPy dtype (CuPy uses the same ones), so arrays of both
backends carry it natively; the wrapper only adds a PyTorch-like name and the
category (bool < integer < floating) that promotion is decided by. bfloat16
is NumPy's through `ml_dtypes`, the extension type JAX uses (CuPy reads it too).
"""
import ml_dtypes
import numpy as np


class DType:
    def __init__(self, name, np_dtype, category):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.category = category  # 0 bool, 1 integer, 2 floating

    @property
    def is_floating_point(self):
        return self.category == 2

    @property
    def itemsize(self):
        return self.np.itemsize

    def __repr__(self):
        return f"mytensor.{self.name}"

    def __reduce__(self):
        return (get_dtype, (self.name,))


bool_ = DType("bool", np.bool_, 0)
uint8 = DType("uint8", np.uint8, 1)
int32 = DType("int32", np.int32, 1)
int64 = DType("int64", np.int64, 1)
float16 = DType("float16", np.float16, 2)
bfloat16 = DType("bfloat16", ml_dtypes.bfloat16, 2)
float32 = DType("float32", np.float32, 2)
float64 = DType("float64", np.float64, 2)

ALL = (bool_, uint8, int32, int64, float16, bfloat16, float32, float64)
LOW_PRECISION = (float16, bfloat16)  # 16-bit floats: reduced in float32, as PyTorch does
_BY_NP = {d.np: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}
_BY_NAME.update({"float": float32, "double": float64, "half": float16, "long": int64, "int": int32})

_LOW_NP = tuple(d.np for d in LOW_PRECISION)
FLOATING = frozenset(d.np for d in ALL if d.is_floating_point)  # NumPy dtypes: a quick test for arrays

_default_float = float32


def sum_dtype(np_dtype):
    """The NumPy dtype sums of `np_dtype` run in: float32 for 16-bit floats, whose running
    sums lose precision (a bfloat16 sum stops growing at 256 equal terms), else None (its own)."""
    return np.float32 if np_dtype in _LOW_NP else None


def get_default_dtype():
    return _default_float


def set_default_dtype(dtype):
    global _default_float
    dtype = get_dtype(dtype)
    if not dtype.is_floating_point:
        raise TypeError(f"default dtype must be floating point, got {dtype}")
    _default_float = dtype


def get_dtype(d):
    """Accept a DType, a NumPy dtype, a Python type or a name; return the DType."""
    if isinstance(d, DType):
        return d
    if d is bool:
        return bool_
    if d is int:
        return int64
    if d is float:
        return _default_float
    if isinstance(d, str) and d in _BY_NAME:
        return _BY_NAME[d]
    try:
        return _BY_NP[np.dtype(d)]
    except (TypeError, KeyError):
        raise TypeError(f"unsupported dtype {d!r}; supported: {', '.join(x.name for x in ALL)}") from None


def from_numpy_dtype(np_dtype):
    """A dictionary lookup first: every op asks."""
    return _BY_NP.get(np_dtype) or get_dtype(np_dtype)


def scalar_dtype(value):
    """The dtype a bare Python number takes on its own."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    if isinstance(value, (float, np.floating)):
        return _default_float
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _wider(a, b):
    if a.category != b.category:
        return a if a.category > b.category else b
    if {a, b} == set(LOW_PRECISION):  # neither holds the other: PyTorch meets them in float32
        return float32
    return _BY_NP[np.promote_types(a.np, b.np)]


def result_type(*operands):
    """PyTorch's promotion: tensors with dimensions outrank 0-dim tensors, which
    outrank Python scalars; a lower tier only matters when its category is higher
    (so `int_tensor * 2.5` is float32, but `float16_tensor * 2.5` stays float16)."""
    tiers = [None, None, None]  # dimensioned, zero-dim, scalar
    for op in operands:
        if hasattr(op, "dtype") and hasattr(op, "ndim"):
            tier, dt = (0 if op.ndim else 1), get_dtype(op.dtype)
        else:  # a Python scalar stands for its category's default type
            tier, dt = 2, scalar_dtype(op)
        tiers[tier] = dt if tiers[tier] is None else _wider(tiers[tier], dt)
    result = None
    for dt in tiers:
        if dt is not None and (result is None or dt.category > result.category):
            result = dt
    return result
