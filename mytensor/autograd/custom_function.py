"""`mytensor.autograd.Function`: custom differentiable functions written as PyTorch documents them.

    class Exp(Function):
        @staticmethod
        def forward(ctx, x):                 # Tensors in, Tensors out, computed without recording
            y = x.exp()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, grad):             # one gradient Tensor (or None) per input of forward
            (y,) = ctx.saved_tensors
            return grad * y

    y = Exp.apply(x)

The `setup_context` style works too: `forward(*args)` without ctx, and
`setup_context(ctx, inputs, output)` to save what backward needs.

This is a layer over the framework's own `autograd.function.Function`, whose ops work
on raw NumPy/CuPy arrays to keep their host cost low. Here `apply` runs the user's
forward under `no_grad`, then records its context as the graph `Node` (a subclass of the
built-in ops' contexts) whose backward wraps the incoming gradient arrays as Tensors, calls the
user's backward and unwraps what it returns. Saved tensors are version-checked like
the built-in ops' saved arrays, and dropped after backward unless `retain_graph`.
"""
from .function import Node, saved_version
from .grad_mode import is_grad_enabled, no_grad
from .graph import increment_version


class FunctionCtx(Node):
    """What forward leaves for backward: saved tensors, flags, and any attribute set on it; once
    recorded, the graph node too (as the built-in ops' contexts are)."""

    def __init__(self, needs_input_grad, backend):
        self.needs_input_grad = needs_input_grad
        self.backend, self.xp = backend, backend.xp  # what the engine reads off every node's ctx
        self.saved = ()
        self.non_differentiable = ()
        self.dirty = ()

    def save_for_backward(self, *tensors):
        from ..tensor import Tensor
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"save_for_backward can only save tensors (or None), got {type(t).__name__}; "
                                f"keep other values as attributes of ctx")
        self.saved = tensors

    @property
    def saved_tensors(self):
        return self.saved

    def mark_non_differentiable(self, *outputs):
        """Outputs (integer indices, masks) that no gradient flows back through."""
        self.non_differentiable = outputs

    def mark_dirty(self, *tensors):
        """Inputs that forward changed in place (and returns): they take the output's place in the graph."""
        self.dirty = tensors

    def set_materialize_grads(self, value):
        self.materialize_grads = bool(value)


class _Backward:
    """The `fn` of the graph node a custom Function records: gradients cross from arrays to Tensors."""

    def __init__(self, cls, backend, input_is_tensor, output_is_tensor):
        self.__name__ = cls.__name__
        self.cls, self.backend = cls, backend
        self.is_tensor = input_is_tensor  # per input of forward
        self.tensor_outputs = output_is_tensor

    def backward(self, ctx, *grads):
        from ..tensor import Tensor
        grads = [Tensor._wrap(g, self.backend) if g is not None and is_t else None
                 for g, is_t in zip(grads, self.tensor_outputs)]
        result = self.cls.backward(ctx, *grads)
        result = result if isinstance(result, tuple) else (result,)
        n = len(self.is_tensor)
        if len(result) < n or any(r is not None for r in result[n:]):
            raise RuntimeError(f"function {self.__name__}Backward returned an incorrect number of gradients "
                               f"(expected {n}, got {len(result)})")
        out = []
        for k, (r, is_t) in enumerate(zip(result, self.is_tensor)):
            if r is None:
                out.append(None)
            elif not is_t:
                raise RuntimeError(f"function {self.__name__}Backward returned a gradient different than None at "
                                   f"position {k + 1}, but the corresponding forward input was not a Tensor")
            elif not isinstance(r, Tensor):
                raise TypeError(f"function {self.__name__}Backward returned a {type(r).__name__} at position "
                                f"{k + 1}; gradients must be Tensors or None")
            else:
                out.append(r._data)
        return tuple(out)


class Function:
    """Subclass with static `forward` and `backward` (and optionally `setup_context`); call `apply`."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("a custom Function must define forward(ctx, *args) (or forward(*args) with "
                                  "setup_context)")

    @staticmethod
    def setup_context(ctx, inputs, output):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("a custom Function must define backward(ctx, *grads) to be differentiated")

    @classmethod
    def apply(cls, *args, **kwargs):
        from ..tensor import Tensor, common_backend
        tensors = [a for a in args if isinstance(a, Tensor)]
        backend = common_backend(tensors, cls.__name__)
        grad_on = is_grad_enabled()
        if grad_on:
            for t in tensors:
                t._sync_view()
        ctx = FunctionCtx(tuple(grad_on and isinstance(a, Tensor) and a.requires_grad for a in args), backend)
        with no_grad():
            if cls.setup_context is not Function.setup_context:
                out = cls.forward(*args, **kwargs)
                cls.setup_context(ctx, args, out)
            else:
                out = cls.forward(ctx, *args, **kwargs)
        if not any(ctx.needs_input_grad):
            return out
        multiple = isinstance(out, tuple)
        outs = list(out if multiple else (out,))
        for i, o in enumerate(outs):
            if isinstance(o, Tensor):
                if o._backend is not backend:
                    raise RuntimeError(f"{cls.__name__}.forward returned a tensor on {o.device} for inputs on "
                                       f"{backend.device}")
                if not any(o is d for d in ctx.dirty) and (o._grad_fn is not None or o._base is not None or any(
                        o is t for t in tensors)):
                    outs[i] = _alias(o)  # a new tensor for the new graph position; the input keeps its own
        is_tensor_out = [isinstance(o, Tensor) for o in outs]
        edges = [a._edge() if isinstance(a, Tensor) and a.requires_grad else None for a in args]
        meta = [(a._data.shape, a._data.dtype) if isinstance(a, Tensor) else None for a in args]
        out_meta = [(o._data.shape, o._data.dtype) if isinstance(o, Tensor) else ((), "float64") for o in outs]
        node = ctx  # the context is the graph node
        node.link(_Backward(cls, backend, [m is not None for m in meta], is_tensor_out), edges, meta, out_meta)
        node.saved_versions = [saved_version(t) for t in ctx.saved if t is not None]
        for i, o in enumerate(outs):
            if not isinstance(o, Tensor) or not o.dtype.is_floating_point or any(o is n for n in
                                                                                ctx.non_differentiable):
                continue
            if any(o is d for d in ctx.dirty):
                if o.is_leaf and o.requires_grad:
                    raise RuntimeError(f"{cls.__name__}: a leaf tensor that requires grad was changed in place "
                                       f"(mark_dirty); pass a clone or use no_grad")
                increment_version(o)
            o.requires_grad, o._grad_fn, o._output_index = True, node, i
        # saved outputs would point back at the node through their grad_fn: keep aliases instead
        ctx.saved = tuple(_alias(t) if t is not None and t._grad_fn is node else t for t in ctx.saved)
        return tuple(outs) if multiple else outs[0]


def _alias(t):
    """Another tensor object on the same storage and version counter, outside any graph."""
    from ..tensor import Tensor
    a = Tensor._wrap(t._data, t._backend)
    a._version = t._version
    return a


def once_differentiable(fn):
    """PyTorch's marker for a backward that can't itself be differentiated; every backward is so here."""
    return fn
