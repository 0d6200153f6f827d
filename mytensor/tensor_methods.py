"""The op methods and Python operators of `Tensor`, bound to the functions in `ops`.

Kept in one table so `tensor.py` stays about the tensor itself. In-place
methods (`add_`, `x[i] = v`, ...) run the out-of-place op, write the result
into the tensor's storage and move the tensor's place in the graph to the new
node; the version counter records the write.
"""
from . import ops
from .autograd.grad_mode import is_grad_enabled
from .tensor import Tensor


def _reversed(fn):
    return lambda self, other: fn(other, self)


_methods = {
    # arithmetic
    "add": ops.add, "sub": ops.sub, "mul": ops.mul, "div": ops.div, "pow": ops.pow, "neg": ops.neg,
    "abs": ops.abs, "exp": ops.exp, "log": ops.log, "sqrt": ops.sqrt, "rsqrt": ops.rsqrt, "sin": ops.sin,
    "cos": ops.cos, "tanh": ops.tanh, "sigmoid": ops.sigmoid, "relu": ops.relu, "sign": ops.sign,
    "square": ops.square, "reciprocal": ops.reciprocal, "maximum": ops.maximum, "minimum": ops.minimum,
    "clamp": ops.clamp, "clip": ops.clamp, "masked_fill": ops.masked_fill,
    "eq": ops.eq, "ne": ops.ne, "lt": ops.lt, "le": ops.le, "gt": ops.gt, "ge": ops.ge,
    "logical_not": ops.logical_not, "isnan": ops.isnan, "isfinite": ops.isfinite,
    # reductions
    "sum": ops.sum, "mean": ops.mean, "max": ops.max, "min": ops.min, "amax": ops.amax, "amin": ops.amin,
    "argmax": ops.argmax, "argmin": ops.argmin, "var": ops.var, "std": ops.std, "logsumexp": ops.logsumexp,
    "prod": ops.prod, "all": ops.all, "any": ops.any, "cumsum": ops.cumsum,
    # shape
    "reshape": ops.reshape, "view": ops.view, "flatten": ops.flatten, "unflatten": ops.unflatten,
    "squeeze": ops.squeeze, "unsqueeze": ops.unsqueeze, "transpose": ops.transpose, "permute": ops.permute,
    "expand": ops.expand, "contiguous": ops.contiguous, "clone": ops.clone, "split": ops.split,
    "chunk": ops.chunk, "narrow": ops.narrow, "flip": ops.flip, "gather": ops.gather,
    "index_select": ops.index_select,
    # linear algebra
    "matmul": ops.matmul, "mm": ops.mm, "bmm": ops.bmm, "dot": ops.dot,
    # operators
    "__add__": ops.add, "__radd__": _reversed(ops.add), "__sub__": ops.sub, "__rsub__": _reversed(ops.sub),
    "__mul__": ops.mul, "__rmul__": _reversed(ops.mul), "__truediv__": ops.div,
    "__rtruediv__": _reversed(ops.div), "__pow__": ops.pow, "__rpow__": _reversed(ops.pow),
    "__matmul__": ops.matmul, "__rmatmul__": _reversed(ops.matmul), "__neg__": ops.neg, "__abs__": ops.abs,
    "__eq__": ops.eq, "__ne__": ops.ne, "__lt__": ops.lt, "__le__": ops.le, "__gt__": ops.gt, "__ge__": ops.ge,
    "__getitem__": ops.getitem,
    "__floordiv__": lambda a, b: ops.div(a, b, rounding_mode="floor"),
    "__invert__": ops.logical_not, "__and__": ops.logical_and, "__or__": ops.logical_or,
}
for _name, _fn in _methods.items():
    setattr(Tensor, _name, _fn)

Tensor.T = property(lambda self: ops.permute(self, *reversed(range(self.ndim))))
Tensor.mT = property(lambda self: ops.transpose(self, -2, -1))
Tensor.expand_as = lambda self, other: ops.expand(self, *other.shape)
Tensor.view_as = lambda self, other: ops.view(self, *other.shape)
Tensor.reshape_as = lambda self, other: ops.reshape(self, *other.shape)
Tensor.type_as = lambda self, other: self.to(other.dtype)


# ------------------------------------------------------------------ in-place
def _inplace(self, fn, *args):
    """Write `fn(self, *args)` into self's storage and move self in the graph."""
    recording = is_grad_enabled() and (self.requires_grad or any(
        isinstance(a, Tensor) and a.requires_grad for a in args))
    if recording and self.is_leaf and self.requires_grad:
        raise RuntimeError("a leaf tensor that requires grad is being used in an in-place operation; "
                           "wrap it in `with mytensor.no_grad():` or use the out-of-place op")
    if recording and self._base is not None and (self._base.requires_grad or self.requires_grad):
        raise RuntimeError("in-place change of a view of a tensor that requires grad is not supported; "
                           "use the out-of-place op")
    old = self
    if recording:  # stand-in for self's previous value: same storage, same graph position
        old = self.detach()
        old.requires_grad, old._grad_fn, old._output_index = self.requires_grad, self._grad_fn, self._output_index
        old._accumulator = self._accumulator
    result = fn(old, *args)
    if tuple(result.shape) != self.shape:
        raise RuntimeError(f"in-place result of shape {result.shape} doesn't match the tensor's shape {self.shape}")
    if result.dtype.category > self.dtype.category:
        raise TypeError(f"result type {result.dtype} can't be cast to the in-place output type {self.dtype}")
    self._backend.xp.copyto(self._data, result._data, casting="unsafe")
    self._version[0] += 1
    if recording:
        self.requires_grad, self._grad_fn, self._output_index = result.requires_grad, result._grad_fn, \
            result._output_index
    return self


def _inplace_method(fn):
    return lambda self, *args, **kwargs: _inplace(self, lambda t, *a: fn(t, *a, **kwargs), *args)


for _name, _fn in {"add_": ops.add, "sub_": ops.sub, "mul_": ops.mul, "div_": ops.div, "pow_": ops.pow,
                   "clamp_": ops.clamp, "relu_": ops.relu, "sigmoid_": ops.sigmoid, "tanh_": ops.tanh,
                   "exp_": ops.exp, "neg_": ops.neg, "abs_": ops.abs, "sqrt_": ops.sqrt, "log_": ops.log,
                   "masked_fill_": ops.masked_fill,
                   "__iadd__": ops.add, "__isub__": ops.sub, "__imul__": ops.mul,
                   "__itruediv__": ops.div}.items():
    setattr(Tensor, _name, _inplace_method(_fn))


def _add_with_alpha(self, other, alpha=1):
    return _inplace(self, lambda t, o: ops.add(t, o * alpha if alpha != 1 else o), other)


Tensor.add_ = _add_with_alpha


def _fill_(self, value):
    from .creation import full_like
    return _inplace(self, lambda t: full_like(t, value.item() if isinstance(value, Tensor) else value))


def _copy_(self, src):
    if not isinstance(src, Tensor):
        raise TypeError(f"copy_ expects a tensor, got {type(src).__name__}")
    return _inplace(self, lambda t, s: ops.expand(s.to(t.dtype, t.device), *t.shape), src)


def _setitem(self, index, value):
    _inplace(self, lambda t, v: ops.index_put(t, index, v), value)


def _uniform_(self, a=0.0, b=1.0):
    from .autograd.grad_mode import no_grad
    with no_grad():
        self._data[...] = self._backend.rand(self.shape, self._data.dtype) * (b - a) + a
    self._version[0] += 1
    return self


def _normal_(self, mean=0.0, std=1.0):
    from .autograd.grad_mode import no_grad
    with no_grad():
        self._data[...] = self._backend.randn(self.shape, self._data.dtype) * std + mean
    self._version[0] += 1
    return self


Tensor.fill_ = _fill_
Tensor.copy_ = _copy_
Tensor.__setitem__ = _setitem
Tensor.uniform_ = _uniform_
Tensor.normal_ = _normal_
