"""Matrix products, batched and broadcast like `numpy.matmul`."""
from ..autograd.function import Function
from . import autocast_policy
from ..autograd.engine import unbroadcast
from .util import as_operands

__all__ = ["matmul", "mm", "bmm", "dot", "einsum", "outer"]


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        # each gradient reads only the other operand
        ctx.shapes = (a.shape, b.shape)
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b if ctx.needs_input_grad[0] else None)
        return ctx.backend.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        sa, sb = ctx.shapes
        xp = ctx.xp
        # lift vectors to matrices, (k,) @ ... as (1, k) and ... @ (k,) as (k, 1), so one pair of
        # formulas covers every case; the output gets those unit dimensions back (b's first)
        sa2 = (1,) + sa if len(sa) == 1 else sa
        sb2 = sb + (1,) if len(sb) == 1 else sb
        g = grad[..., None] if len(sb) == 1 else grad
        g = xp.expand_dims(g, -2) if len(sa) == 1 else g
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(ctx.backend.matmul(g, xp.swapaxes(b.reshape(sb2), -1, -2)), sa2).reshape(sa)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(ctx.backend.matmul(xp.swapaxes(a.reshape(sa2), -1, -2), g), sb2).reshape(sb)
        return ga, gb


@autocast_policy.lower_precision
def matmul(a, b):
    (a, b), _ = as_operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dimension, got shapes {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: inner dimensions don't match: shapes {tuple(a.shape)} and {tuple(b.shape)} "
                         f"({k_a} != {k_b})")
    if a.ndim > 2 and b.ndim > 2:
        from .util import broadcast_shapes
        try:
            broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of shapes {tuple(a.shape)} and {tuple(b.shape)} can't be "
                             "broadcast") \
                from None
    return MatMul.apply(a, b)


def mm(a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"mm expects 2-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def bmm(a, b):
    if a.ndim != 3 or b.ndim != 3:
        raise ValueError(f"bmm expects 3-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"bmm: batch sizes differ: shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def dot(a, b):
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"dot expects 1-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def outer(a, b):
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"outer expects 1-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return a.reshape(-1, 1) * b.reshape(1, -1)


class Einsum(Function):
    """Each operand's gradient is another einsum: the output's gradient contracted with the
    other operands, onto that operand's subscripts (letters summed away only there are
    broadcast back)."""

    @staticmethod
    def forward(ctx, subscripts, output, *operands):
        ctx.args = (subscripts, output, [o.shape for o in operands])
        ctx.save_for_backward(*operands)
        return ctx.xp.einsum(",".join(subscripts) + "->" + output, *operands)

    @staticmethod
    def backward(ctx, grad):
        subscripts, output, shapes = ctx.args
        xp, ops = ctx.xp, ctx.saved
        grads = [None]
        for i, sub in enumerate(subscripts):
            if not ctx.needs_input_grad[i + 2]:
                grads.append(None)
                continue
            others = [s for j, s in enumerate(subscripts) if j != i]
            known = set(output).union(*others)
            kept = "".join(c for c in sub if c in known)
            g = xp.einsum(",".join([output] + others) + "->" + kept, grad, *[o for j, o in enumerate(ops) if j != i])
            # letters only this operand has were summed away: the gradient is the same along them
            sizes = dict(zip(sub, shapes[i]))
            g = xp.broadcast_to(g.reshape([sizes[c] if c in known else 1 for c in sub]), shapes[i])
            grads.append(g)
        return (None, *grads)


def _parse_einsum(equation, operands):
    """Letters per operand and for the output; `...` becomes capital letters, right-aligned."""
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    subs = lhs.split(",")
    if len(subs) != len(operands):
        raise ValueError(f"einsum(): the equation {equation!r} has {len(subs)} operands but {len(operands)} were given")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in eq]
    n_ell = max((o.ndim - len(s.replace("...", "")) for s, o in zip(subs, operands) if "..." in s), default=0)
    ell = "".join(spare[:n_ell])
    expanded = []
    for s, o in zip(subs, operands):
        if "..." in s:
            k = o.ndim - len(s.replace("...", ""))
            s = s.replace("...", ell[n_ell - k:])
        if len(s) != o.ndim:
            raise ValueError(f"einsum(): subscripts {s!r} don't match an operand of shape {tuple(o.shape)}")
        if len(set(s)) != len(s):
            raise NotImplementedError(f"torch.einsum with a repeated index in one operand ({s!r}, a diagonal): "
                                      f"use torch.diagonal-free forms")
        expanded.append(s)
    if arrow:
        out = out.replace("...", ell)
    else:
        counts = {}
        for s in expanded:
            for c in s:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return expanded, out


def einsum(equation, *operands):
    """PyTorch's einsum: `einsum("bij,bjk->bik", a, b)`; operands may also come as one list."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    operands, _ = as_operands(*operands)
    subs, out = _parse_einsum(equation, operands)
    for s, o in zip(subs, operands):
        for c, n in zip(s, o.shape):
            for s2, o2 in zip(subs, operands):
                if c in s2 and o2.shape[s2.index(c)] != n:
                    raise ValueError(f"einsum(): index {c!r} has sizes {n} and {o2.shape[s2.index(c)]} in "
                                     f"{equation!r} (shapes {[tuple(t.shape) for t in operands]})")
    return Einsum.apply(tuple(subs), out, *operands)
