"""The `Tensor`: an array on a device, plus what autograd needs to know about it.

A tensor owns one backend array (`_data`, NumPy or CuPy). If it came out of a
recorded op it points at that op's graph node (`grad_fn`); leaves that
require grad collect `.grad`. Views share a version counter with their base, so
an in-place write through either is seen by the graph check in backward.
"""
import weakref

import numpy as np

from . import dtypes
from . import memory_formats as formats
from .backend import get_backend, to_host


_new = object.__new__


class Size(tuple):
    """A tensor's shape: a tuple that prints as `mytensor.Size([2, 3])`, as PyTorch's does.
    (Its slices are plain tuples: indexing stays the C tuple's, which op bookkeeping relies on.)"""
    __slots__ = ()

    def __repr__(self):
        return f"mytensor.Size({list(self)})"

    def __add__(self, other):
        return Size(tuple.__add__(self, other))

    def numel(self):
        n = 1
        for s in self:
            n *= s
        return n


def common_backend(tensors, op_name="operation"):
    """The one backend all tensor arguments of an op live on."""
    if not tensors:
        return get_backend("cpu")
    backend = tensors[0]._backend
    for t in tensors[1:]:
        if t._backend is not backend:
            devices = ", ".join(str(x.device) for x in tensors)
            raise RuntimeError(f"{op_name}: expected all tensors on the same device, got tensors on {devices}; "
                               f"move them with .to(device) first")
    return backend


class Tensor:
    __array_priority__ = 1000  # so `ndarray * tensor` calls Tensor.__rmul__

    # What a fresh tensor is, on the class: a new tensor sets only what every op reads (`_init`,
    # `_wrap`); the rest is read from here until the instance sets its own.
    grad = None
    _grad_fn = None
    _output_index = 0
    _accumulator = None
    _view_fn = None  # for a view: base -> this view, as recorded ops
    _view_epoch = 0  # for a view: the base's _epoch when the view's graph was taken
    _epoch = 0       # bumped when an in-place op gives this tensor a new place in the graph

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        backend = get_backend(device) if device is not None else (
            data._backend if isinstance(data, Tensor) else get_backend(None))
        self._init(_array_from_data(data, dtype, backend), backend)
        if requires_grad:
            self.requires_grad_(True)

    def _init(self, arr, backend):
        self._data, self._backend = arr, backend
        self._version = [0]  # shared with views and detached aliases; bumped by every in-place write
        self.requires_grad = False
        self._base = None  # for a view: the tensor owning the storage

    @staticmethod
    def _wrap(arr, backend):
        """Wrap a backend array without copying it."""
        t = _new(Tensor)
        t._init(arr, backend)
        return t

    # ------------------------------------------------------------ attributes
    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim=None):
        return Size(self._data.shape) if dim is None else self._data.shape[dim]

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def numel(self):
        return int(self._data.size)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def dtype(self):
        return dtypes.from_numpy_dtype(self._data.dtype)

    def element_size(self):
        return self._data.dtype.itemsize

    @property
    def device(self):
        return self._backend.device

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def is_leaf(self):
        return self._grad_fn is None

    @property
    def grad_fn(self):
        return self._grad_fn

    def is_floating_point(self):
        return self.dtype.is_floating_point

    def is_contiguous(self, memory_format=formats.contiguous_format):
        formats.check(memory_format, 4, "is_contiguous")
        return formats.is_in(self._data, memory_format)

    def stride(self, dim=None):
        s = tuple(b // self._data.itemsize for b in self._data.strides)
        return s if dim is None else s[dim]

    @property
    def data(self):
        return self.detach()

    @data.setter
    def data(self, value):
        self._data = value._data if isinstance(value, Tensor) else value

    # ---------------------------------------------------------- conversions
    def numpy(self):
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError("can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()")
        return to_host(self._data)

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"only a one-element tensor can be converted to a Python scalar, got shape "
                             f"{tuple(self.shape)}")
        return to_host(self._data).reshape(()).item()

    def tolist(self):
        return to_host(self._data).tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.numel()} elements is ambiguous")
        return bool(self.item())

    def __index__(self):
        if self.dtype.category != 1 or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        arr = to_host(self._data)
        return arr if dtype is None else arr.astype(dtype)

    def __dlpack__(self, *args, **kwargs):
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{device}")

    def type(self, dtype):
        return self.to(dtype)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def bfloat16(self):
        return self.to(dtypes.bfloat16)

    def long(self):
        return self.to(dtypes.int64)

    def int(self):
        return self.to(dtypes.int32)

    def bool(self):
        return self.to(dtypes.bool_)

    # ------------------------------------------------------------- autograd
    def requires_grad_(self, requires_grad=True):
        if requires_grad and not self.dtype.is_floating_point:
            raise RuntimeError(f"only floating point tensors can require gradients, got {self.dtype}")
        if not requires_grad and not self.is_leaf:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use detach()")
        self.requires_grad = requires_grad
        return self

    def detach(self):
        """The same storage, cut from the graph."""
        t = Tensor._wrap(self._data, self._backend)
        t._version = self._version
        return t

    def detach_(self):
        self._grad_fn, self.requires_grad = None, False
        return self

    def _sync_view(self):
        """A view whose base has moved in the graph (an in-place op on the base or on
        another view of it) takes its graph again from the base; its data is current."""
        if self._base is not None and self._view_epoch != self._base._epoch:
            self._set_graph(self._view_fn(self._base))
            self._view_epoch = self._base._epoch

    def _set_graph(self, other):
        """Take `other`'s place in the graph (used by in-place ops and views)."""
        self.requires_grad, self._grad_fn, self._output_index = other.requires_grad, other._grad_fn, \
            other._output_index

    def _edge(self):
        """Where a gradient for this tensor goes: its producer, or its accumulator."""
        if self._grad_fn is not None:
            return self._grad_fn, self._output_index
        if self._accumulator is None:
            self._accumulator = AccumulateGrad(self)
        return self._accumulator, 0

    def backward(self, gradient=None, retain_graph=False):
        from .autograd.engine import run_backward
        self._sync_view()
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn: "
                               "nothing to differentiate (did you forget requires_grad=True, or run under no_grad?)")
        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; this tensor has shape "
                                   f"{tuple(self.shape)}: pass backward(gradient) with a tensor of that shape")
            g = self._backend.xp.ones(self._data.shape, dtype=self._data.dtype)
        else:
            if isinstance(gradient, Tensor):
                common_backend([self, gradient], "backward")
                gradient = gradient._data
            g = self._backend.asarray(gradient, self._data.dtype)
            if tuple(g.shape) != self.shape:
                raise RuntimeError(f"gradient has shape {tuple(g.shape)} but the tensor has shape {tuple(self.shape)}")
        run_backward([(self._edge(), g)], retain_graph=retain_graph)

    def register_hook(self, hook):
        """Call `hook(grad)` when this tensor's gradient is computed; a returned
        tensor replaces the gradient."""
        self._sync_view()
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        node, idx = self._edge()
        if not node.hooks:
            node.hooks = {}
        hooks = node.hooks.setdefault(idx, [])
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call `hook(tensor)` on a leaf once backward has added its gradient to `.grad`, e.g. to
        send the gradient to other processes while backward goes on (DistributedDataParallel)."""
        if not self.is_leaf:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        hooks = self._edge()[0].post_hooks
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def retain_grad(self):
        """Keep `.grad` on a non-leaf tensor too (the gradient after all its hooks)."""
        self._sync_view()
        if self.is_leaf:
            return
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on a tensor that doesn't require gradient")
        if not self._grad_fn.retained:
            self._grad_fn.retained = {}
        self._grad_fn.retained[self._output_index] = weakref.ref(self)

    def zero_(self):
        return self.fill_(0)

    # ---------------------------------------------------------------- repr
    def __repr__(self):
        body = np.array2string(to_host(self._data), separator=", ", prefix="tensor(",
                               precision=4, threshold=200)
        extras = []
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype not in (dtypes.float32, dtypes.int64, dtypes.bool_) or self.numel() == 0:
            extras.append(f"dtype={self.dtype}")
        if self._grad_fn is not None:
            extras.append(f"grad_fn=<{self._grad_fn.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    def __format__(self, spec):
        """`f"{loss:.4f}"` formats a one-element tensor's value, as in PyTorch."""
        if self._data.ndim == 0:
            return format(self.item(), spec)
        if spec:
            raise TypeError(f"unsupported format string {spec!r} for a tensor of shape {tuple(self.shape)}: "
                            f"format one element, e.g. f\"{{t.item():{spec}}}\"")
        return str(self)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __hash__(self):
        return id(self)

    def __reduce_ex__(self, protocol):
        return (_rebuild, (to_host(self._data), str(self.device), self.requires_grad))


def _rebuild(arr, device, requires_grad):
    return Tensor(arr, device=device, requires_grad=requires_grad)


class _HookHandle:
    def __init__(self, hooks, hook):
        self.hooks, self.hook = hooks, hook

    def remove(self):
        if self.hook in self.hooks:
            self.hooks.remove(self.hook)


def _array_from_data(data, dtype, backend):
    """A backend array from Python data, a NumPy/CuPy array or a tensor,
    with PyTorch's dtype inference (Python floats become the default float)."""
    if isinstance(data, Tensor):
        arr = data._data if data._backend is backend else backend.asarray(to_host(data._data))
        return arr.astype(dtypes.get_dtype(dtype).np) if dtype is not None else arr.copy()
    if dtype is None:
        dtype = _infer_dtype(data)
    dtype = dtypes.get_dtype(dtype)
    try:
        return backend.asarray(to_host(data) if backend.name == "cpu" else data, dtype.np).copy()
    except (ValueError, TypeError) as e:
        raise TypeError(f"can't make a tensor from {type(data).__name__}: {e}") from None


def _infer_dtype(data):
    if hasattr(data, "dtype"):
        return dtypes.get_dtype(data.dtype)
    try:
        arr = np.asarray(data)
    except ValueError:  # ragged nesting
        arr = None
    if arr is None or arr.dtype == object:
        raise TypeError(f"can't make a tensor from ragged or non-numeric data: {data!r:.80}")
    if arr.dtype.kind == "f":
        return dtypes.get_default_dtype()
    if arr.dtype.kind in "iu":
        return dtypes.int64
    return dtypes.get_dtype(arr.dtype)


# below the class: autograd's Function binds Tensor when it loads
from .autograd.function import AccumulateGrad  # noqa: E402
from .autograd.grad_mode import is_grad_enabled  # noqa: E402
