"""Memory formats, as `torch.memory_format`: how a tensor's elements lie in memory.

`contiguous_format` is row-major (C order). `channels_last` stores a 4-D (N, C, H, W)
tensor as (N, H, W, C): the shape and indexing stay (N, C, H, W), only the strides
change. Convolutions on the tensor cores read that layout directly (implicit GEMM),
so a network run channels-last needs no layout copies between its layers.
"""


class MemoryFormat:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"mytensor.{self.name}"


contiguous_format = MemoryFormat("contiguous_format")
channels_last = MemoryFormat("channels_last")
preserve_format = MemoryFormat("preserve_format")


def check(memory_format, ndim, fn):
    """A clear error for what is not a memory format, or channels_last below 4-D."""
    if not isinstance(memory_format, MemoryFormat):
        raise TypeError(f"{fn}(): memory_format must be a mytensor.memory_format (such as mytensor.channels_last), "
                        f"got {memory_format!r}")
    if memory_format is channels_last and ndim != 4:
        raise RuntimeError(f"{fn}(): channels_last needs a 4-D tensor (N, C, H, W), got a {ndim}-D one")


def is_in(array, memory_format):
    """Whether `array` is laid out in `memory_format` (contiguous_format or channels_last)."""
    if memory_format is channels_last:
        return array.ndim == 4 and array.transpose(0, 2, 3, 1).flags.c_contiguous
    return bool(array.flags.c_contiguous)


def of(array):
    """The format `preserve_format` keeps: channels_last for a 4-D array laid out so (and not
    contiguous as well, as one of size-1 dimensions may be), else contiguous_format."""
    return channels_last if not array.flags.c_contiguous and is_in(array, channels_last) else contiguous_format
