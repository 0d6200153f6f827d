"""`pad`: PyTorch's parameter names over the core `pad` op (constant mode)."""
from ...ops.shape import pad as _pad


def pad(input, pad, mode="constant", value=None):
    """Pad the last dimensions: pad = (left, right) of the last one, then of the one
    before it, and so on. Only mode='constant' is supported (value None means 0)."""
    return _pad(input, pad, mode, 0 if value is None else value)
