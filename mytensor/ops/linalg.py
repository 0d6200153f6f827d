"""Matrix products, batched and broadcast like `numpy.matmul`."""
from ..autograd.function import Function
from ._util import as_operands, unbroadcast

__all__ = ["matmul", "mm", "bmm", "dot"]


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
        from ._util import broadcast_shapes
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
