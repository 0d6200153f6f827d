"""Matrix products, batched and broadcast like `numpy.matmul`."""
from ..autograd.function import Function
from ._util import as_operands, unbroadcast

__all__ = ["matmul", "mm", "bmm", "dot"]


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.xp.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        xp = ctx.xp
        # lift vectors to matrices so one pair of formulas covers every case
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g = grad
        if a.ndim == 1:
            g = xp.expand_dims(g, -2)
        if b.ndim == 1:
            g = xp.expand_dims(g, -1)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(xp.matmul(g, xp.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(xp.matmul(xp.swapaxes(a2, -1, -2), g), b2.shape).reshape(b.shape)
        return ga, gb


def matmul(a, b):
    (a, b), _ = as_operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: inner dimensions don't match: shapes {a.shape} and {b.shape} "
                         f"({k_a} != {k_b})")
    if a.ndim > 2 and b.ndim > 2:
        from ._util import broadcast_shapes
        try:
            broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of shapes {a.shape} and {b.shape} can't be broadcast") \
                from None
    return MatMul.apply(a, b)


def mm(a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"mm expects 2-D tensors, got shapes {a.shape} and {b.shape}")
    return matmul(a, b)


def bmm(a, b):
    if a.ndim != 3 or b.ndim != 3:
        raise ValueError(f"bmm expects 3-D tensors, got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"bmm: batch sizes differ: shapes {a.shape} and {b.shape}")
    return matmul(a, b)


def dot(a, b):
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"dot expects 1-D tensors, got shapes {a.shape} and {b.shape}")
    return matmul(a, b)
