"""`Function`: the one contract every differentiable op follows.

An op subclasses `Function` and writes two static methods side by side:
`forward(ctx, *args)` computes on raw arrays (NumPy or CuPy) and saves what
backward needs with `ctx.save_for_backward`; `backward(ctx, *grads)` returns
one gradient array (or None) per argument of forward. `Function.apply` wraps
tensors in and out and records the op's context, a `Node`, in the graph; the
engine knows nothing about any particular op.
"""
from types import MappingProxyType

from ..backend import fp_errors
from ..backend.array_backend import is_channels_last
from ..dtypes import FLOATING, from_numpy_dtype
from .grad_mode import _enabled as _grad_enabled


NO_HOOKS = MappingProxyType({})  # the hook tables of a node that has none (most): made on the first


class Node:
    """One op's context and, once the op is recorded, its place in the graph. As in PyTorch, the
    `ctx` that forward and backward get is the graph node itself: recording makes no second object.

    `Function.apply` makes it and sets `backend`, `xp` (its array module) and `needs_input_grad` (per
    argument of forward: does it need a gradient); `saved` and `out_backend` default on the class
    (two stores less per op); `link` adds the graph's part."""

    materialize_grads = True  # the engine passes zeros for outputs that got no gradient
    saved_versions = ()  # per saved array of a tensor: (version counter, version at save time, shape, dtype)
    hooks = NO_HOOKS     # output index -> [fn(grad) -> grad or None]
    retained = NO_HOOKS  # output index -> weakref of a tensor that retains its grad
    freed = False
    saved = ()          # what save_for_backward keeps
    out_backend = None  # set by an op whose output is on another device

    def save_for_backward(self, *arrays):
        """Arrays (or None) backward reads; those of input/output tensors are
        version-checked, and all are dropped when the graph is freed."""
        self.saved = arrays

    def link(self, fn, edges, input_meta, output_meta):
        """Put this op in the graph: `fn`'s backward runs on it, gradients go along `edges`."""
        self.fn = fn
        self.edges = edges              # per input: (node, output_index) or None
        self.input_meta = input_meta    # per input: (shape, np dtype) to shape grads
        self.output_meta = output_meta  # per output: (shape, np dtype) for missing grads
        self.n_outputs = len(output_meta)

    @property
    def name(self):
        return self.fn.__name__ + "Backward"

    @property
    def next_functions(self):
        """Per tensor input, as in PyTorch: (node, output index), or (None, 0) where no gradient goes."""
        return tuple(e or (None, 0) for e, m in zip(self.edges, self.input_meta) if m is not None)

    def __repr__(self):
        return f"<{self.name}>"

    def check_versions(self):
        for counter, version, shape, dtype in self.saved_versions:
            if counter[0] != version:
                raise RuntimeError(
                    f"one of the variables needed for gradient computation has been modified by an "
                    f"in-place operation: a tensor of shape {tuple(shape)} and dtype {from_numpy_dtype(dtype).name}, "
                    f"saved by {self.name}, is at version {counter[0]}; expected version {version}. Clone it "
                    f"before changing it in place.")

    def apply(self, grads):
        if self.freed:
            raise RuntimeError(
                f"trying to backward through the graph a second time ({self.name} has freed its saved "
                f"arrays); pass retain_graph=True to the first backward() if you need to")
        self.check_versions()
        result = self.fn.backward(self, *grads)  # (run_backward keeps floating-point errors quiet)
        return result if isinstance(result, tuple) else (result,)

    def release(self):
        """Drop the saved arrays after backward; only a node that had some can't run again
        (as in PyTorch, where `(x + 1).sum()` can be differentiated twice)."""
        if self.saved:
            self.saved = ()
            self.freed = True


class AccumulateGrad:
    """The node for a leaf tensor: adds the incoming gradient to `leaf.grad`."""
    n_outputs = 1
    edges = input_meta = ()
    name = "AccumulateGrad"

    next_functions = ()
    hooks = retained = NO_HOOKS

    def __init__(self, leaf):
        self.leaf = leaf
        self.post_hooks = []  # called with the leaf once its `.grad` holds the new sum

    @property
    def variable(self):
        return self.leaf

    def __repr__(self):
        return "<AccumulateGrad>"

    def accumulate(self, grad):
        leaf = self.leaf
        if leaf.grad is None:
            # a fresh array (the incoming one may be a read-only broadcast or shared with another leaf),
            # laid out as the leaf is, as PyTorch's gradient layout contract has it
            leaf.grad = Tensor._wrap(leaf._backend.copy(grad, channels_last=is_channels_last(leaf._data)),
                                     leaf._backend)
        else:
            leaf.grad._data += grad
        for hook in self.post_hooks:
            hook(leaf)


class Function:
    is_view = False  # True for ops whose output may share the first input's storage
    # False for ops whose forward NumPy never warns about (no overflow, no 0/0): apply then skips
    # quieting floating-point errors, a context variable set and reset (a tenth of a small op)
    may_warn = True

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        # Every op comes through here, so the path is kept short: one pass over the arguments, one
        # object for the context and the graph node, forward called without unpacking a list where
        # it can be. Its Python is most of a small op's time.
        backend, raw, needs, grad_on = None, [], [], _grad_enabled.get()
        for a in args:
            if isinstance(a, Tensor):
                if a._base is not None and grad_on:
                    a._sync_view()
                if a._backend is not backend:
                    if backend is not None:
                        common_backend([t for t in args if isinstance(t, Tensor)], cls.__name__)  # raises
                    backend = a._backend
                raw.append(a._data)
                needs.append(a.requires_grad)
            else:
                raw.append(a)
                needs.append(False)
        ctx = Node()  # (Node has no __init__: a call of the class is cheaper than object.__new__)
        ctx.backend = backend = backend or common_backend([], cls.__name__)
        ctx.xp, ctx.needs_input_grad = backend.xp, tuple(needs)
        token = fp_errors.ignore() if cls.may_warn else None
        try:  # one or two arguments, most ops' count, passed as such: CPython's call with *raw is slower
            out = (cls.forward(ctx, raw[0]) if len(raw) == 1 else
                   cls.forward(ctx, raw[0], raw[1]) if len(raw) == 2 else cls.forward(ctx, *raw))
        finally:
            if token is not None:
                fp_errors.restore(token)
        backend = ctx.out_backend or backend
        if type(out) is tuple:  # (a NumPy scalar made a 0-d array)
            result = outputs = tuple([_wrap(o if type(o) is backend.ndarray else backend.asarray(o), backend)
                                             for o in out])
        else:
            result = _wrap(out if type(out) is backend.ndarray else backend.asarray(out), backend)
            outputs = (result,)
        if cls.is_view and ctx.xp.may_share_memory(outputs[0]._data, raw[0]):
            _make_view(outputs[0], cls, args)  # (its closure there: here its cells would cost every op)
        if grad_on and True in ctx.needs_input_grad:
            _record(cls, ctx, args, outputs)
        return result


def _record(fn, ctx, args, outputs):
    """Put the op's node (its ctx) in the graph: its outputs point at it, it points at its inputs."""
    edges, meta = [], []
    for a in args:
        if isinstance(a, Tensor):
            edges.append(a._edge() if a.requires_grad else None)
            data = a._data
            meta.append((data.shape, data.dtype))
        else:
            edges.append(None)
            meta.append(None)
    out_meta, i = [], 0
    for r in outputs:  # (a count, not enumerate nor a comprehension: each costs a call in Python 3.11)
        data = r._data
        out_meta.append((data.shape, data.dtype))
        if data.dtype in FLOATING:
            r.requires_grad, r._grad_fn, r._output_index = True, ctx, i
        i += 1
    ctx.link(fn, edges, meta, out_meta)
    if ctx.saved:
        ctx.saved_versions = _saved_versions(ctx.saved, args, outputs)


def _make_view(view, fn, args):
    """Make `view` (what `fn` made of `args`) share the version counter of its source, `args[0]`,
    and remember how to take it again from the base tensor: an in-place write through the view
    updates the base's graph, and a base changed in place re-derives the graphs of its views."""
    src, rest = args[0], args[1:]

    def redo(base):
        return fn.apply(base, *rest)
    if src._base is None:
        view._base, view._view_fn = src, redo
    else:
        parent = src._view_fn
        view._base, view._view_fn = src._base, (lambda base: redo(parent(base)))
    view._version = src._version
    view._view_epoch = view._base._epoch


def _saved_versions(saved, args, outputs):
    """Remember the version of each tensor whose array was saved, so an in-place
    change before backward is caught rather than giving a silently wrong gradient."""
    tensors = [a for a in args if isinstance(a, Tensor)]
    tensors += outputs
    found = []
    for arr in saved:
        if arr is not None:
            for t in tensors:
                if t._data is arr:
                    found.append(saved_version(t))
                    break
    return found


def saved_version(t):
    """(version counter, its value now, shape, dtype): what `check_versions` compares and names."""
    return t._version, t._version[0], t._data.shape, t._data.dtype


from ..tensor import Tensor, common_backend  # noqa: E402  (tensor.py defines Tensor before it imports this module)

_wrap = Tensor._wrap  # a global: looking an attribute up on a class is not specialised (Python 3.11)
