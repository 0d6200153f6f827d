"""Argument checking and parsing shared by the functional modules and by the layers built on
them (a Conv2d parses its arguments as conv2d does), and the reduction of a loss."""
import numbers

from ...dtypes import FLOATING
from ...tensor import Tensor


def check_tensor(x, name, fn):
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}(): argument '{name}' must be a tensor, got {type(x).__name__}")


def check_float(x, name, fn):
    check_tensor(x, name, fn)
    if x._data.dtype not in FLOATING:
        raise TypeError(f"{fn}(): '{name}' must be a floating point tensor, got {x.dtype}")


def check_same_dtype(fn, input, **others):
    """Parameters must have the input's dtype, as in PyTorch (no silent promotion
    that would, say, run a float32 model in float64)."""
    for name, t in others.items():
        if t is not None and t._data.dtype != input._data.dtype:
            raise TypeError(f"{fn}(): input has dtype {input.dtype} but {name} has dtype {t.dtype}; "
                            f"convert one of them with .to(dtype)")


def check_same_device(fn, input, **others):
    for name, t in others.items():
        if t is not None and t._backend is not input._backend:  # one backend per device
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
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{fn}(): {name} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in out)


def conv_padding(padding, kernel, stride, dilation, fn):
    """A convolution's padding as a pair: numbers as they are, 'valid' none, 'same' what keeps H
    and W (stride 1, and only where the padding splits evenly on both sides)."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"{fn}(): padding='same' is not supported for strided convolutions")
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        if any(t % 2 for t in total):
            raise NotImplementedError(f"{fn}(): padding='same' with an even effective kernel size needs uneven "
                                      f"padding, which is not supported; pad the input with F.pad instead")
        return tuple(t // 2 for t in total)
    return pair(padding, "padding", fn)


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
