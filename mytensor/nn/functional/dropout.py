"""`dropout`: zero each element with probability p and scale the rest by 1/(1-p),
so the expected value is unchanged. Backward multiplies by the same mask."""
from ...autograd.function import Function
from .util import check_float


class Dropout(Function):
    """x * mask, the mask of `shape`: x's, or (N, C, 1, 1) for dropout2d, broadcast over H and W."""

    @staticmethod
    def forward(ctx, x, p, shape):
        xp = ctx.xp
        if p == 1:
            mask = xp.zeros(shape, dtype=x.dtype)   # every element dropped (1/(1-p) would be inf)
        else:
            mask = ctx.backend.dropout_mask(shape, p, x.dtype)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved
        return grad * mask, None, None


def dropout(input, p=0.5, training=True, inplace=False):
    """In training, zero elements with probability p (scaling the others by 1/(1-p));
    otherwise return the input unchanged. `inplace` is accepted for PyTorch
    compatibility, but the result is always a new tensor."""
    check_float(input, "input", "dropout")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"dropout(): probability has to be between 0 and 1, but got {p!r}")
    if not training or p == 0:
        return input
    return Dropout.apply(input, float(p), tuple(input.shape))


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, H, W) (or (C, H, W)) input, with probability p each."""
    check_float(input, "input", "dropout2d")
    if not 0 <= p <= 1:
        raise ValueError(f"dropout2d(): probability has to be between 0 and 1, but got {p!r}")
    if not training or p == 0:
        return input
    if input.ndim not in (3, 4):
        raise ValueError(f"dropout2d(): expected a 3-D or 4-D input, got shape {tuple(input.shape)}")
    return Dropout.apply(input, float(p), tuple(input.shape[:-2]) + (1, 1))
