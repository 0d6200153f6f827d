"""Reverse-mode differentiation: order the graph, then push gradients back.

The graph is a DAG of `Node`s. We count, for every node, how many gradients
it will receive, and run a node once all of them have arrived, so each node's
backward runs exactly once however many paths reach it.
"""

from .. import dtypes
from ..backend import fp_errors
from .function import AccumulateGrad
from .grad_mode import no_grad


def _reachable(roots):
    """Number of incoming gradients per node reachable from the roots."""
    pending, seen, stack = {}, set(), [n for n, _ in roots]
    for n in stack:
        seen.add(n)
    while stack:
        node = stack.pop()
        for edge in node.edges:
            if edge is None:
                continue
            nxt = edge[0]
            pending[nxt] = pending.get(nxt, 0) + 1
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return pending


def _run_hooks(node, index, grad, backend):
    """Tensor hooks may replace the gradient; a retained `.grad` gets the final one."""
    from ..tensor import Tensor
    for hook in node.hooks.get(index, ()):
        new = hook(Tensor._wrap(grad, backend))
        if new is not None:
            grad = new._data
    ref = node.retained.get(index)
    t = ref() if ref is not None else None
    if t is not None:
        if t.grad is None:
            t.grad = Tensor._wrap(backend.copy(grad), backend)
        else:
            t.grad._data += grad
    return grad


def zero_grads(tensors, set_to_none=True):
    """Forget the gradients the last backward left in `.grad` (they accumulate otherwise): drop
    them, or fill them with zeros in place. Module.zero_grad and Optimizer.zero_grad call it."""
    for t in tensors:
        if t.grad is None:
            continue
        if set_to_none:
            t.grad = None
        else:
            t.grad._data.fill(0)


def run_backward(roots, retain_graph=False, capture=None):
    """roots: [((node, output_index), grad_array)]; fills .grad of the leaves.

    With `capture` (a dict whose keys are nodes), no `.grad` is touched: the gradients
    reaching those nodes' outputs are stored in it instead (for `autograd.grad`)."""
    grads = {}  # node -> [grad per output]
    for (node, idx), g in roots:
        slot = grads.setdefault(node, [None] * node.n_outputs)
        slot[idx] = g if slot[idx] is None else slot[idx] + g
    pending = _reachable([e for e, _ in roots])
    ready = [n for n in grads if pending.get(n, 0) == 0]
    token = fp_errors.ignore()  # inf and nan come out silently, as in forward (see Function.apply)
    try:
        with no_grad():
            _drain(ready, grads, pending, retain_graph, capture)
    finally:
        fp_errors.restore(token)


def _drain(ready, grads, pending, retain_graph, capture):
    """Run the nodes as their last gradient arrives (see run_backward)."""
    while ready:
        node = ready.pop()
        outs = grads.pop(node, None)
        if outs is None:  # no gradient flowed here: only release what waits on it
            in_grads = [None] * len(node.edges)
        elif capture is not None and node in capture:
            capture[node] = outs
            if isinstance(node, AccumulateGrad):
                continue
            in_grads = _apply_node(node, outs, retain_graph)
        elif isinstance(node, AccumulateGrad):
            if capture is None:
                node.accumulate(_run_hooks(node, 0, outs[0], node.leaf._backend))
            continue
        else:
            in_grads = _apply_node(node, outs, retain_graph)
        for edge, g, meta in zip(node.edges, in_grads, node.input_meta):
            if edge is None:
                continue
            nxt, idx = edge
            if g is not None:
                g = _match(g, meta)
                slot = grads.setdefault(nxt, [None] * nxt.n_outputs)
                slot[idx] = g if slot[idx] is None else node.backend.add(slot[idx], g)
            pending[nxt] -= 1
            if pending[nxt] == 0:
                ready.append(nxt)


def _apply_node(node, outs, retain_graph):
    if node.hooks or node.retained:
        outs = [None if g is None else _run_hooks(node, i, g, node.backend) for i, g in enumerate(outs)]
    if node.materialize_grads:
        outs = [node.xp.zeros(*node.output_meta[i]) if g is None else g for i, g in enumerate(outs)]
    in_grads = node.apply(outs)
    if len(in_grads) != len(node.edges):
        raise RuntimeError(f"{node.name} returned {len(in_grads)} gradients for {len(node.edges)} inputs")
    if not retain_graph:
        node.release()
    return in_grads


def _match(grad, meta):
    """Give a gradient its input's shape and dtype, as PyTorch's engine does: an input that
    broadcasting stretched gets the sum over the stretched dimensions (so ops' backwards may
    return the gradient of the broadcast shape), and promotion may have widened the dtype."""
    shape, dtype = meta
    if grad.shape != shape:
        grad = unbroadcast(grad, shape)
    if grad.dtype != dtype:
        grad = grad.astype(dtype)
    return grad


def unbroadcast(grad, shape):
    """Sum a gradient over the dimensions broadcasting added or stretched to reach `shape`."""
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    if grad.ndim < len(shape):  # unit dimensions in front that the gradient lacks (`x[i] = v`, v of shape (1, n))
        grad = grad.reshape((1,) * (len(shape) - grad.ndim) + grad.shape)
    extra = grad.ndim - len(shape)
    stretched = grad.shape[extra:]
    if any(s != 1 and s != g for s, g in zip(shape, stretched)):
        raise RuntimeError(f"gradient of shape {tuple(grad.shape)} computed for an input of shape {shape}")
    axes = tuple(range(extra)) + tuple(i + extra for i, s in enumerate(shape) if s == 1 and stretched[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True, dtype=dtypes.sum_dtype(grad.dtype)).astype(grad.dtype, copy=False)
    return grad.reshape(shape)
