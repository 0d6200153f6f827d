"""Argument checking and small array helpers shared by the functional modules."""
from ...tensor import Tensor


def check_tensor(x, name, fn):
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}(): argument '{name}' must be a tensor, got {type(x).__name__}")


def check_float(x, name, fn):
    check_tensor(x, name, fn)
    if not x.dtype.is_floating_point:
        raise TypeError(f"{fn}(): '{name}' must be a floating point tensor, got {x.dtype}")


def check_same_dtype(fn, input, **others):
    """Parameters must have the input's dtype, as in PyTorch (no silent promotion
    that would, say, run a float32 model in float64)."""
    for name, t in others.items():
        if t is not None and t.dtype is not input.dtype:
            raise TypeError(f"{fn}(): input has dtype {input.dtype} but {name} has dtype {t.dtype}; "
                            f"convert one of them with .to(dtype)")


def check_same_device(fn, input, **others):
    for name, t in others.items():
        if t is not None and t.device != input.device:
            raise RuntimeError(f"{fn}(): input is on {input.device} but {name} is on {t.device}; "
                               f"move them to one device with .to(device)")


def pair(value, name, fn):
    """An int or a pair of ints, as a tuple of two ints."""
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            value = (value[0], value[0])
        if len(value) != 2:
            raise ValueError(f"{fn}(): {name} must be an int or a pair of ints, got {value!r}")
        out = tuple(value)
    else:
        out = (value, value)
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{fn}(): {name} must be an int or a pair of ints, got {value!r}")
    return out


def contiguous(xp, a):
    """A C-contiguous array (the kernels of every backend read that layout)."""
    return a if a.flags.c_contiguous else xp.ascontiguousarray(a)


def reduction_from_legacy(size_average, reduce, reduction):
    """PyTorch's deprecated size_average/reduce flags, mapped to `reduction`."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return ("mean" if size_average else "sum") if reduce else "none"


def check_reduction(reduction, fn):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{fn}(): reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def reduce_loss(loss, reduction):
    """Apply a reduction to a per-element loss tensor (composed from the ops)."""
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()
