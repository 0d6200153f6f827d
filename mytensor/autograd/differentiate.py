"""`autograd.grad`: gradients of outputs with respect to chosen tensors, returned rather than
accumulated into `.grad` (for gradient penalties, meta-gradients, checks)."""
from .engine import run_backward


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=None,
         materialize_grads=False):
    """d(sum of outputs * grad_outputs) / d(each input), as a tuple; no `.grad` is touched."""
    from ..tensor import Tensor, common_backend
    if create_graph:
        raise NotImplementedError("torch.autograd.grad(create_graph=True): mytensor's backward is not itself "
                                  "recorded, so higher derivatives are not available")
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    single = isinstance(inputs, Tensor)
    inputs = (inputs,) if single else tuple(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = (grad_outputs,) * len(outputs) if grad_outputs is None else (grad_outputs,)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    roots = []
    for out, g in zip(outputs, grad_outputs):
        out._sync_view()
        if not out.requires_grad:
            raise RuntimeError("grad: an output does not require grad and has no grad_fn: nothing to differentiate")
        if g is None:
            if out.numel() != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; pass grad_outputs for "
                                   f"the output of shape {tuple(out.shape)}")
            g = out._backend.xp.ones(out._data.shape, dtype=out._data.dtype)
        else:
            common_backend([out, g], "grad")
            g = g._data
        roots.append((out._edge(), g))
    for t in inputs:
        t._sync_view()
        if not t.requires_grad:
            raise RuntimeError("grad: one of the inputs does not require grad")
    edges = [t._edge() for t in inputs]
    capture = {node: None for node, _ in edges}
    run_backward(roots, retain_graph=bool(retain_graph), capture=capture)
    result = []
    for t, (node, idx) in zip(inputs, edges):
        got = capture[node]
        g = None if got is None else got[idx]
        if g is None:
            if materialize_grads:
                g = t._backend.xp.zeros(t._data.shape, dtype=t._data.dtype)
            elif not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been used in the graph. "
                                   "Set allow_unused=True if this is the desired behavior.")
        result.append(None if g is None else Tensor._wrap(g, t._backend))
    return tuple(result)


def Variable(data, requires_grad=False, volatile=False):
    """PyTorch's old wrapper: since 0.4 a Variable is a Tensor, and so it is here."""
    return data.requires_grad_(requires_grad) if requires_grad else data
