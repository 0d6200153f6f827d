"""The op methods and Python operators of `Tensor`, bound to the functions in `ops`.

Kept in one table so `tensor.py` stays about the tensor itself. In-place
methods (`add_`, `x[i] = v`, `x[:, 0] += 1`, ...) run the out-of-place op,
write the result into the tensor's storage and move the tensor's place in the
graph to the new node (and its base's, for a view); the version counter
records the write.
"""
from . import dtypes, ops, unsupported
from . import memory_formats as formats
from .backend import Device, device as as_device
from .autograd.function import Function
from .autograd.grad_mode import is_grad_enabled, no_grad
from .autograd.graph import increment_version
from .ops.util import OPERANDS
from .tensor import Tensor


def _operator(fn, reflected=False):
    """A binary operator; other operand types get NotImplemented, so Python's own
    TypeError (or `x == None` being False) follows, and NumPy never takes over."""
    def method(self, other):
        if not isinstance(other, OPERANDS):
            return NotImplemented
        return fn(other, self) if reflected else fn(self, other)
    return method


def _floordiv(a, b):
    return ops.div(a, b, rounding_mode="floor")


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
    "index_select": ops.index_select, "sort": ops.sort, "argsort": ops.argsort, "topk": ops.topk,
    "tril": ops.tril, "triu": ops.triu, "scatter": ops.scatter, "scatter_add": ops.scatter_add,
    "outer": ops.outer, "floor": ops.floor, "ceil": ops.ceil, "round": ops.round, "trunc": ops.trunc,
    "log1p": ops.log1p, "expm1": ops.expm1, "log2": ops.log2, "log10": ops.log10, "repeat": ops.repeat,
    "tile": ops.tile, "repeat_interleave": ops.repeat_interleave, "roll": ops.roll, "unbind": ops.unbind,
    "movedim": ops.movedim, "swapaxes": ops.swapaxes, "norm": ops.norm, "lerp": ops.lerp,
    "allclose": ops.allclose, "isclose": ops.isclose, "equal": ops.equal, "nonzero": ops.nonzero,
    "argwhere": ops.argwhere, "masked_select": ops.masked_select,
    # linear algebra
    "matmul": ops.matmul, "mm": ops.mm, "bmm": ops.bmm, "dot": ops.dot,
    "where": lambda self, condition, other: ops.where(condition, self, other),
    # operators
    "__neg__": ops.neg, "__abs__": ops.abs, "__invert__": ops.logical_not, "__getitem__": ops.getitem,
}
for _name, _fn in _methods.items():
    setattr(Tensor, _name, _fn)
for _name, _fn in {"add": ops.add, "sub": ops.sub, "mul": ops.mul, "truediv": ops.div, "floordiv": _floordiv,
                   "pow": ops.pow, "matmul": ops.matmul, "and": ops.logical_and, "or": ops.logical_or}.items():
    setattr(Tensor, f"__{_name}__", _operator(_fn))
    setattr(Tensor, f"__r{_name}__", _operator(_fn, reflected=True))
for _name, _fn in {"eq": ops.eq, "ne": ops.ne, "lt": ops.lt, "le": ops.le, "gt": ops.gt, "ge": ops.ge}.items():
    setattr(Tensor, f"__{_name}__", _operator(_fn))

Tensor.T = property(lambda self: ops.permute(self, *reversed(range(self.ndim))))
Tensor.mT = property(lambda self: ops.transpose(self, -2, -1))
Tensor.expand_as = lambda self, other: ops.expand(self, *other.shape)
Tensor.view_as = lambda self, other: ops.view(self, *other.shape)
Tensor.reshape_as = lambda self, other: ops.reshape(self, *other.shape)
Tensor.type_as = lambda self, other: self.to(other.dtype)
Tensor.t = lambda self: ops.transpose(self, 0, 1) if self.ndim == 2 else self


def parse_to(*args, device=None, dtype=None, non_blocking=False, copy=False):
    """The (device, dtype, copy) that the arguments of PyTorch's `.to` name, for Tensor.to and
    Module.to alike: to(device), to(dtype), to(device, dtype), to(tensor) (its device and dtype),
    with keywords; None where one is not named. non_blocking is accepted and changes nothing:
    copies to a GPU are queued without waiting anyway."""
    rest = [a for a in args if a is not None]
    if rest and isinstance(rest[0], Tensor):
        device, dtype = rest[0].device, rest[0].dtype
        rest.pop(0)
    else:
        if rest and isinstance(rest[0], (str, Device)) and not _is_dtype(rest[0]):
            device = rest.pop(0)
        if rest and _is_dtype(rest[0]):
            dtype = rest.pop(0)
    if rest:
        raise TypeError(f"to() takes a device, a dtype, a device and a dtype (in that order) or a tensor, "
                        f"with non_blocking= and copy= as keywords; got {', '.join(map(repr, args))}")
    return as_device(device) if device is not None else None, \
        dtypes.get_dtype(dtype) if dtype is not None else None, copy


def _is_dtype(spec):
    try:
        dtypes.get_dtype(spec)
        return True
    except TypeError:
        return False


def _to(self, *args, memory_format=formats.preserve_format, **kwargs):
    """PyTorch's `.to` (see parse_to); `memory_format` (such as mytensor.channels_last) lays the
    result out anew."""
    device, dtype, copy = parse_to(*args, **kwargs)
    out = ops.to_copy(self, dtype=dtype, device=device, copy=copy)
    return out if memory_format is formats.preserve_format else ops.contiguous(out, memory_format)


def _multinomial(self, num_samples, replacement=False, generator=None):
    from .creation import multinomial
    return multinomial(self, num_samples, replacement, generator)


def _new(fill):
    """`x.new_zeros(size)` and friends: a new tensor with x's dtype and device unless told otherwise."""
    def method(self, *size, dtype=None, device=None, requires_grad=False):
        from .creation import full
        if len(size) == 1 and isinstance(size[0], (tuple, list)):
            size = tuple(size[0])
        return full(size, fill, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)
    return method


def _new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
    from .creation import full
    return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


def _new_tensor(self, data, dtype=None, device=None, requires_grad=False):
    return Tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


Tensor.to, Tensor.multinomial = _to, _multinomial
Tensor.new_zeros, Tensor.new_ones, Tensor.new_empty = _new(0), _new(1), _new(0)
Tensor.new_full, Tensor.new_tensor = _new_full, _new_tensor
Tensor.nelement, Tensor.ndimension = Tensor.numel, Tensor.dim


# ------------------------------------------------------------------ in-place
def _inplace(self, fn, *args):
    """Write `fn(self, *args)` into self's storage and move self in the graph.

    While recording, the op runs on a clone of self, so what it saves for backward
    is not overwritten by the write. Writing through a view also moves the base:
    it becomes "the old base with the view's region replaced"."""
    base = self._base
    recording = is_grad_enabled() and (self.requires_grad or (base is not None and base.requires_grad) or any(
        isinstance(a, Tensor) and a.requires_grad for a in args))
    if recording:
        owner = self if base is None else base
        if owner.is_leaf and owner.requires_grad:
            raise RuntimeError(f"a leaf tensor that requires grad{'' if base is None else ' (or a view of one)'} "
                               f"is being used in an in-place operation; wrap it in `with mytensor.no_grad():` "
                               f"or use the out-of-place op")
        result = fn(ops.clone(self if base is None else self._view_fn(base)), *args)
    else:
        result = fn(self, *args)
    if tuple(result.shape) != self.shape:
        raise RuntimeError(f"in-place result of shape {tuple(result.shape)} doesn't match the tensor's shape "
                           f"{tuple(self.shape)}")
    if result.dtype.category > self.dtype.category:
        raise TypeError(f"result type {result.dtype} can't be cast to the in-place output type {self.dtype}")
    if recording:
        result = result.to(self.dtype)
    self._backend.xp.copyto(self._data, result._data, casting="unsafe")
    increment_version(self)
    if recording:
        if base is None:
            self._set_graph(result)
        else:
            base._set_graph(_WriteView.apply(base, result, self._view_fn))
        (base if base is not None else self)._epoch += 1
        self._sync_view()
    return self


class _WriteView(Function):
    """The graph of a write through a view: out = base with the view's region
    replaced by `value`. The storage already holds `out`, so forward only returns it."""

    @staticmethod
    def forward(ctx, base, value, view_fn):
        # where the view's elements sit in the base, as flat indices (whatever the strides)
        positions = ctx.xp.arange(base.size).reshape(base.shape)
        ctx.region = view_fn(Tensor._wrap(positions, ctx.backend))._data
        return base

    @staticmethod
    def backward(ctx, grad):
        grad_base = grad.copy()
        grad_base.reshape(-1)[ctx.region] = 0
        return grad_base, grad.reshape(-1)[ctx.region], None


def _inplace_method(fn):
    return lambda self, *args, **kwargs: _inplace(self, lambda t, *a: fn(t, *a, **kwargs), *args)


for _name, _fn in {"add_": ops.add, "sub_": ops.sub, "mul_": ops.mul, "div_": ops.div, "pow_": ops.pow,
                   "clamp_": ops.clamp, "relu_": ops.relu, "sigmoid_": ops.sigmoid, "tanh_": ops.tanh,
                   "exp_": ops.exp, "neg_": ops.neg, "abs_": ops.abs, "sqrt_": ops.sqrt, "log_": ops.log,
                   "sin_": ops.sin, "cos_": ops.cos, "rsqrt_": ops.rsqrt, "reciprocal_": ops.reciprocal,
                   "square_": ops.square, "clip_": ops.clamp, "masked_fill_": ops.masked_fill,
                   "scatter_": ops.scatter, "scatter_add_": ops.scatter_add, "tril_": ops.tril, "triu_": ops.triu,
                   "floor_": ops.floor, "ceil_": ops.ceil, "round_": ops.round, "trunc_": ops.trunc,
                   "log1p_": ops.log1p, "expm1_": ops.expm1, "lerp_": ops.lerp,
                   "__iadd__": ops.add, "__isub__": ops.sub, "__imul__": ops.mul, "__itruediv__": ops.div,
                   "__ipow__": ops.pow}.items():
    setattr(Tensor, _name, _inplace_method(_fn))


def _add_with_alpha(self, other, alpha=1):
    return _inplace(self, lambda t, o: ops.add(t, o * alpha if alpha != 1 else o), other)


Tensor.add_ = _add_with_alpha


def _fill_(self, value):
    """Differentiable in `value` (a 0-d tensor), and gives zero gradient to the old contents."""
    from .creation import ones_like
    if isinstance(value, Tensor):
        value = value.to(self.dtype)
    return _inplace(self, lambda t: ops.masked_fill(t, ones_like(t, dtype=bool), value))


def _copy_(self, src):
    if not isinstance(src, Tensor):
        raise TypeError(f"copy_ expects a tensor, got {type(src).__name__}")
    return _inplace(self, lambda t, s: ops.expand(s.to(t.device, t.dtype), *t.shape), src)


def _setitem(self, index, value):
    _inplace(self, lambda t, v: ops.index_put(t, index, v), value)


def _uniform_(self, a=0.0, b=1.0):
    with no_grad():
        self._data[...] = self._backend.rand(self.shape, self._data.dtype) * (b - a) + a
    increment_version(self)
    return self


def _normal_(self, mean=0.0, std=1.0):
    with no_grad():
        self._data[...] = self._backend.randn(self.shape, self._data.dtype) * std + mean
    increment_version(self)
    return self


def _unsupported_method(torch_name):
    """A property, not a `Tensor.__getattr__`: defining that would slow every attribute
    read of every tensor (CPython stops specialising them), which op bookkeeping is full of."""
    def get(self):
        raise unsupported.error(torch_name)
    return property(get)


for _torch_name in unsupported.ALTERNATIVES:
    if _torch_name.startswith("torch.Tensor."):
        setattr(Tensor, _torch_name[len("torch.Tensor."):], _unsupported_method(_torch_name))

Tensor.fill_ = _fill_
Tensor.copy_ = _copy_
Tensor.__setitem__ = _setitem
Tensor.uniform_ = _uniform_
Tensor.normal_ = _normal_
