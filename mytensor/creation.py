"""Making tensors: from data, filled, ranges, random, and zero-copy exchange."""
import numpy as np

from . import dtypes, memory_formats
from .backend import backend_of_array, get_backend
from .memory_formats import channels_last, preserve_format
from .tensor import Tensor


def tensor(data, dtype=None, device=None, requires_grad=False):
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(s) for s in size)


def _nhwc(shape, channels_last, make):
    """make(shape), or with `channels_last` make((N, H, W, C)) seen as the (N, C, H, W) `shape`."""
    if not channels_last:
        return make(shape)
    n, c, h, w = shape
    return make((n, h, w, c)).transpose(0, 3, 1, 2)


def _filled(fill, size, dtype, device, requires_grad, channels_last=False):
    dtype = dtypes.get_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    backend = get_backend(device)
    data = _nhwc(_shape(size), channels_last, lambda shape: backend.xp.full(shape, fill, dtype=dtype.np))
    t = Tensor._wrap(data, backend)
    return t.requires_grad_(requires_grad) if requires_grad else t


def _like_channels_last(t, memory_format, fn):
    """Whether `fn(t, memory_format=...)` makes a channels-last tensor: `preserve_format`, PyTorch's
    default, keeps t's layout (an optimizer's buffers lie as their parameter)."""
    memory_formats.check(memory_format, t.ndim, fn)
    if memory_format is preserve_format:
        memory_format = memory_formats.of(t._data)
    return memory_format is channels_last


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _filled(0, size, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _filled(1, size, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return _filled(0, size, dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = dtypes.scalar_dtype(fill_value)
    return _filled(fill_value, tuple(size) if isinstance(size, (tuple, list)) else (size,), dtype, device,
                   requires_grad)


def zeros_like(t, dtype=None, device=None, requires_grad=False, memory_format=preserve_format):
    return full_like(t, 0, dtype, device, requires_grad, memory_format)


def ones_like(t, dtype=None, device=None, requires_grad=False, memory_format=preserve_format):
    return full_like(t, 1, dtype, device, requires_grad, memory_format)


def empty_like(t, dtype=None, device=None, requires_grad=False, memory_format=preserve_format):
    return full_like(t, 0, dtype, device, requires_grad, memory_format)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False, memory_format=preserve_format):
    return _filled(fill_value, t.shape, dtype or t.dtype, device or t.device, requires_grad,
                   _like_channels_last(t, memory_format, "full_like"))


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    dtype = dtypes.result_type(start, end, step) if dtype is None else dtypes.get_dtype(dtype)
    backend = get_backend(device)
    # floats are stepped in float64 and then rounded, as PyTorch does; NumPy would step in the
    # target dtype and drift (arange(0, 1, 0.1) in float32 would be off in the last place)
    work = np.float64 if dtype.is_floating_point else dtype.np
    t = Tensor._wrap(backend.xp.arange(start, end, step, dtype=work).astype(dtype.np, copy=False), backend)
    return t.requires_grad_(requires_grad) if requires_grad else t


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    dtype = dtypes.get_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    backend = get_backend(device)
    t = Tensor._wrap(backend.xp.linspace(start, end, steps, dtype=dtype.np), backend)
    return t.requires_grad_(requires_grad) if requires_grad else t


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    dtype = dtypes.get_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    backend = get_backend(device)
    t = Tensor._wrap(backend.xp.eye(n, m, dtype=dtype.np), backend)
    return t.requires_grad_(requires_grad) if requires_grad else t


# ------------------------------------------------------------------ random
def manual_seed(seed):
    """Seed every backend's generator: the CPU's, and the CUDA one where there is a GPU."""
    from .backend import cuda_is_available, loaded_backends
    get_backend("cpu")
    if cuda_is_available():
        get_backend("cuda")
    for backend in loaded_backends():
        backend.seed(seed)


def _random(method, size, dtype, device, requires_grad, channels_last=False):
    dtype = dtypes.get_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    if not dtype.is_floating_point:
        raise TypeError(f"{method} needs a floating point dtype, got {dtype}")
    backend = get_backend(device)
    t = Tensor._wrap(_nhwc(_shape(size), channels_last, lambda shape: getattr(backend, method)(shape, dtype.np)),
                     backend)
    return t.requires_grad_(requires_grad) if requires_grad else t


def rand(*size, dtype=None, device=None, requires_grad=False):
    return _random("rand", size, dtype, device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False):
    return _random("randn", size, dtype, device, requires_grad)


def rand_like(t, dtype=None, device=None, requires_grad=False, memory_format=preserve_format):
    return _random("rand", t.shape, dtype or t.dtype, device or t.device, requires_grad,
                   _like_channels_last(t, memory_format, "rand_like"))


def randn_like(t, dtype=None, device=None, requires_grad=False, memory_format=preserve_format):
    return _random("randn", t.shape, dtype or t.dtype, device or t.device, requires_grad,
                   _like_channels_last(t, memory_format, "randn_like"))


def randint(low, high=None, size=None, dtype=None, device=None):
    """`randint(high, size)` or `randint(low, high, size)`, as in PyTorch."""
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() needs a size")
    backend = get_backend(device)
    arr = backend.randint(low, high, _shape((size,)) if isinstance(size, int) else tuple(size))
    return Tensor._wrap(arr.astype(dtypes.get_dtype(dtype or dtypes.int64).np, copy=False), backend)


def randperm(n, device=None, generator=None, dtype=None):
    if generator is not None:
        return Tensor(generator.rng.permutation(n), device=device, dtype=dtype)
    backend = get_backend(device)
    return Tensor._wrap(backend.permutation(n).astype(np.int64, copy=False), backend)


def multinomial(input, num_samples, replacement=False, generator=None):
    """Draw category indices with probabilities proportional to the rows of `input` (1-D or 2-D).

    By the Gumbel-max trick: argmax(log p + Gumbel noise) is a draw from p, and the top k of
    one noisy row are k draws without replacement; so sampling is elementwise math and an
    argsort on the device, with nothing read back (a GPT's sampling loop stays on the GPU).
    Invalid rows (negative, all zero) are reported on the CPU only, where checking is free."""
    if generator is not None:
        raise NotImplementedError("torch.multinomial(generator=...): seed with mytensor.manual_seed instead")
    if input.ndim not in (1, 2):
        raise ValueError(f"multinomial(): expected a 1-D or 2-D tensor of probabilities, got shape "
                         f"{tuple(input.shape)}")
    n = input.shape[-1]
    if not replacement and num_samples > n:
        raise ValueError(f"multinomial(): cannot draw {num_samples} samples without replacement from {n} categories")
    backend, p = input._backend, input._data.astype("float64")
    xp = backend.xp
    if backend.name == "cpu" and (p.min(initial=0) < 0 or not (p.sum(axis=-1) > 0).all() or
                                  not np.isfinite(p).all()):
        raise ValueError("multinomial(): probabilities must be finite, non-negative, with a positive sum per row")
    rows = p.reshape(-1, n)
    with np.errstate(divide="ignore"):
        logp = xp.log(rows)
    if replacement:
        u = backend.rand((rows.shape[0], num_samples, n), np.float64)
        noisy = logp[:, None, :] - xp.log(-xp.log(u))
        out = xp.argmax(noisy, axis=-1)
    else:
        u = backend.rand(rows.shape, np.float64)
        noisy = logp - xp.log(-xp.log(u))
        out = xp.argsort(-noisy, axis=-1)[:, :num_samples]
    out = out.astype(np.int64, copy=False)
    return Tensor._wrap(out.reshape(input.shape[:-1] + (num_samples,)), backend)


# ------------------------------------------------------------- exchange
def from_numpy(arr):
    """A tensor sharing memory with a NumPy array."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(arr).__name__}")
    dtypes.get_dtype(arr.dtype)  # clear error for unsupported dtypes
    return Tensor._wrap(arr, get_backend("cpu"))


def from_dlpack(obj):
    """Zero-copy import of any DLPack producer (NumPy, CuPy, PyTorch...)."""
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"from_dlpack expects an object with __dlpack__, got {type(obj).__name__}")
    kind, _ = obj.__dlpack_device__()
    if kind == 1:  # kDLCPU
        arr = np.from_dlpack(obj)
    elif kind == 2:  # kDLCUDA
        import cupy
        arr = cupy.from_dlpack(obj)
    else:
        raise RuntimeError(f"from_dlpack: unsupported DLPack device type {kind}")
    dtypes.get_dtype(arr.dtype)
    return Tensor._wrap(arr, backend_of_array(arr))
