"""Elementwise math: arithmetic with broadcasting, unary functions, comparisons."""
from .. import dtypes
from ..autograd.function import Function
from ..backend import get_backend, to_host
from ..backend.array_backend import keep_layout
from ..tensor import Tensor
from . import autocast_policy
from .util import as_operands, broadcast_shapes, float_unary, scalar_operand, wide

__all__ = ["to_copy", "add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos",
           "maximum", "minimum", "clamp", "where", "sign", "square", "reciprocal",
           "eq", "ne", "lt", "le", "gt", "ge", "logical_not", "logical_and", "logical_or", "isnan", "isfinite"]


class ToCopy(Function):
    """A change of dtype and/or device; the gradient goes back the same way."""

    @staticmethod
    def forward(ctx, x, dtype, backend, copy):
        ctx.src_dtype = x.dtype
        if backend is not ctx.backend:
            x, copy = _move(x, ctx.backend, backend), False
            ctx.out_backend = backend
        return x.astype(dtype, copy=copy)

    @staticmethod
    def backward(ctx, grad):
        grad = _move(grad, ctx.out_backend or ctx.backend, ctx.backend)
        return grad.astype(ctx.src_dtype, copy=False), None, None, None


def _move(arr, src, dst):
    if src is dst:
        return arr
    return dst.asarray(to_host(arr)) if dst.name == "cpu" else dst.asarray(arr)


def to_copy(x, dtype=None, device=None, copy=False):
    dtype = dtypes.get_dtype(dtype) if dtype is not None else x.dtype
    backend = get_backend(device) if device is not None else x._backend
    if dtype is x.dtype and backend is x._backend and not copy:
        return x
    if not dtype.is_floating_point:
        x = x.detach()
    return ToCopy.apply(x, dtype.np, backend, copy)


# ------------------------------------------------------------- arithmetic
# The backwards of broadcasting ops return gradients of the broadcast shape: the engine sums
# each back to its input's shape.
class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return ctx.backend.add(a, b)

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return keep_layout(ctx.xp.subtract, a, b)

    @staticmethod
    def backward(ctx, grad):
        return grad, -grad if ctx.needs_input_grad[1] else None


def _shape(a):
    return getattr(a, "shape", ())  # Python numbers are 0-d


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        # save only what a needed gradient reads, so `(y * 2)` doesn't pin y against in-place changes
        need_a, need_b = ctx.needs_input_grad
        ctx.save_for_backward(a if need_b else None, b if need_a else None)
        return keep_layout(ctx.xp.multiply, a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = (None if v is None else wide(v) for v in ctx.saved)  # 16-bit: in float32, as PyTorch
        grad = wide(grad)
        return (grad * b if ctx.needs_input_grad[0] else None,
                grad * a if ctx.needs_input_grad[1] else None)


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b)
        return ctx.xp.true_divide(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = (None if v is None else wide(v) for v in ctx.saved)  # 16-bit: in float32, as PyTorch
        grad = wide(grad)
        return (grad / b if ctx.needs_input_grad[0] else None,
                -grad * a / (b * b) if ctx.needs_input_grad[1] else None)


class Pow(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = ctx.xp.power(a, b)
        ctx.save_for_backward(a, b, out if ctx.needs_input_grad[1] else None)
        return out

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        # a Python-number operand: CuPy's where() needs arrays; 16-bit floats in float32, as PyTorch
        # does (rounding b - 1 alone would move the exponent)
        a, b, out = (None if v is None else wide(xp.asarray(v)) for v in ctx.saved)
        grad = wide(grad)
        ga = gb = None
        # PyTorch's conventions: d/da is 0 where b == 0 (even at a == 0), d/db is 0 where a == 0 and b >= 0
        if ctx.needs_input_grad[0]:
            ga = xp.where(b == 0, 0, grad * b * xp.power(a, b - 1)).astype(grad.dtype, copy=False)
        if ctx.needs_input_grad[1]:
            gb = xp.where((a == 0) & (b >= 0), 0, grad * out * xp.log(a)).astype(grad.dtype, copy=False)
        return ga, gb


def _in(np_dtype, out):
    """`out` in the promoted (NumPy) dtype: CuPy's own promotion of bfloat16 with scalars and
    0-d arrays can widen it to float32 (a cast then, recorded like any other)."""
    return out if out._data.dtype is np_dtype else to_copy(out, np_dtype)


_PLAIN_FLOATS = (dtypes.float32.np, dtypes.float64.np, dtypes.float16.np)  # bfloat16 aside: see _in


def _binary(fn):
    """Promote dtypes, then apply the Function: the user-facing binary op. (`fn.apply` is bound
    once: looking a classmethod up on its class makes a new bound method every call.)"""
    apply = fn.apply

    def op(a, b):
        if isinstance(a, Tensor):
            dtype = a._data.dtype
            if dtype in _PLAIN_FLOATS and (isinstance(b, Tensor) and b._data.dtype is dtype or
                                           type(b) is float or type(b) is int):
                # a float tensor with one of its dtype or a Python number, the common case: nothing
                # to promote, and the shapes are checked only when the array module can't broadcast
                # them (to raise the error that names them)
                try:
                    out = apply(a, b)
                except ValueError:
                    _check_broadcast(a, b)
                    raise
                return out if out._data.dtype is dtype else _in(dtype, out)  # (the common case without the call)
        (a, b), dtype = as_operands(a, b)
        _check_broadcast(a, b)
        return _in(dtype.np, apply(a, b))
    op.__name__ = fn.__name__.lower()
    return op


add, mul, _sub = _binary(Add), _binary(Mul), _binary(Sub)
pow = autocast_policy.float32(_binary(Pow))


def sub(a, b):
    if _is_bool(a) or _is_bool(b):
        raise TypeError("subtraction with a bool tensor is not supported; use ~ or logical_not() to invert a mask")
    return _sub(a, b)


def _is_bool(x):
    return x is True or x is False or (isinstance(x, Tensor) and x._data.dtype == bool)


def _check_broadcast(*operands):
    shapes = [t._data.shape for t in operands if isinstance(t, Tensor)]
    if not shapes:
        raise TypeError("at least one operand must be a tensor")
    if len(set(shapes)) > 1:
        broadcast_shapes(*shapes)


def div(a, b, rounding_mode=None):
    """True division (integers become the default float), or floor division."""
    if rounding_mode not in (None, "floor"):
        raise ValueError(f"div: rounding_mode must be None or 'floor', got {rounding_mode!r}")
    if rounding_mode == "floor":
        (a, b), _ = as_operands(a, b)
        _check_broadcast(a, b)
        return FloorDiv.apply(a, b)
    if not dtypes.result_type(a, b).is_floating_point:
        f = dtypes.get_default_dtype()
        a = a.to(f) if isinstance(a, Tensor) else a
        b = b.to(f) if isinstance(b, Tensor) else b
    (a, b), dtype = as_operands(a, b)
    _check_broadcast(a, b)
    return _in(dtype.np, Div.apply(a, b))


class FloorDiv(Function):
    """Piecewise constant: the gradient is zero, as in PyTorch."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        return ctx.xp.floor_divide(a, b)

    @staticmethod
    def backward(ctx, grad):
        return tuple(ctx.xp.zeros(s, grad.dtype) if need else None
                     for s, need in zip(ctx.shapes, ctx.needs_input_grad))


# ---------------------------------------------------------------- unary
class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.abs(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return grad * ctx.xp.sign(x)


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        out = ctx.xp.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return grad * out


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return grad / x


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        out = ctx.xp.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return grad / (2 * out)


class Sin(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.sin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return grad * ctx.xp.cos(x)


class Cos(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.cos(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return -grad * ctx.xp.sin(x)


sqrt, sin, cos = (float_unary(f) for f in (Sqrt, Sin, Cos))
exp, log = (autocast_policy.float32(float_unary(f)) for f in (Exp, Log))


def neg(x):
    return Neg.apply(x)


def abs(x):
    return Abs.apply(x)


@autocast_policy.float32
def rsqrt(x):
    return 1 / sqrt(x)


def square(x):
    return mul(x, x)


@autocast_policy.float32
def reciprocal(x):
    return div(1, x)


class Sign(Function):
    """-1, 0 or 1 (0 for nan, as in PyTorch); differentiable with gradient zero."""

    @staticmethod
    def forward(ctx, x):
        return ctx.xp.where(x != x, 0, ctx.xp.sign(x)).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        return ctx.xp.zeros_like(grad)


def sign(x):
    return Sign.apply(x)


# ------------------------------------------------------ selection by value
class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        return ctx.xp.where(cond, a, b)

    @staticmethod
    def backward(ctx, grad):
        (cond,) = ctx.saved
        zero = grad.dtype.type(0)
        return None, ctx.xp.where(cond, grad, zero), ctx.xp.where(cond, zero, grad)


def where(condition, input, other):
    if not isinstance(condition, Tensor) or condition.dtype is not dtypes.bool_:
        raise TypeError("where() expects a bool tensor as condition")
    (a, b), dtype = as_operands(input, other)
    _check_broadcast(condition, a, b)
    return _in(dtype.np, Where.apply(condition, a, b))


def maximum(a, b):
    """Elementwise max; on ties the gradient is split evenly, as in PyTorch."""
    (a, b), dtype = as_operands(a, b)
    _check_broadcast(a, b)
    return _in(dtype.np, _Extremum.apply(a, b, True))


def minimum(a, b):
    (a, b), dtype = as_operands(a, b)
    _check_broadcast(a, b)
    return _in(dtype.np, _Extremum.apply(a, b, False))


class _Extremum(Function):
    @staticmethod
    def forward(ctx, a, b, is_max):
        ctx.is_max = is_max
        ctx.save_for_backward(a, b)
        return ctx.xp.maximum(a, b) if is_max else ctx.xp.minimum(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        xp = ctx.xp
        out = xp.maximum(a, b) if ctx.is_max else xp.minimum(a, b)
        wa = (a == out).astype(grad.dtype)
        wb = (b == out).astype(grad.dtype)
        total = wa + wb
        return grad * wa / total, grad * wb / total, None


class Clamp(Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.bounds = (lo, hi)
        out = x if lo is None else ctx.xp.maximum(x, lo)
        return out if hi is None else ctx.xp.minimum(out, hi)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        lo, hi = ctx.bounds
        mask = ctx.xp.ones(x.shape, dtype=bool)
        if lo is not None:
            mask &= x >= lo
        if hi is not None:
            mask &= x <= hi
        return grad * mask, None, None


def clamp(x, min=None, max=None):
    """Bounds are numbers or tensors; the result dtype follows promotion (an integer
    tensor clamped to 0.5 is float), as in PyTorch."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        # `where`, not maximum/minimum: at a tie the gradient goes to x, as in PyTorch
        out = x
        if min is not None:
            out = where(out < min, min, out)
        if max is not None:
            out = where(out > max, max, out)
        return out
    x = as_operands(x, *(b for b in (min, max) if b is not None))[0][0]
    return _in(x._data.dtype, Clamp.apply(x, *(None if b is None else scalar_operand(b, x.dtype) for b in (min, max))))


# ------------------------------------------------ comparisons (no gradient)
def _compare(name):
    def op(a, b):
        (a, b), _ = as_operands(a, b)
        _check_broadcast(a, b)
        t = a if isinstance(a, Tensor) else b
        raw = [x._data if isinstance(x, Tensor) else x for x in (a, b)]
        return Tensor._wrap(getattr(t._backend.xp, name)(*raw), t._backend)
    op.__name__ = name
    return op


eq, ne, lt, le, gt, ge = (_compare(n) for n in ("equal", "not_equal", "less", "less_equal", "greater",
                                                 "greater_equal"))
logical_and, logical_or = _compare("logical_and"), _compare("logical_or")


def logical_not(x):
    return Tensor._wrap(x._backend.xp.logical_not(x._data), x._backend)


def isnan(x):
    return Tensor._wrap(x._backend.xp.isnan(x._data), x._backend)


def isfinite(x):
    return Tensor._wrap(x._backend.xp.isfinite(x._data), x._backend)
