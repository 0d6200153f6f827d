"""Pooling: summarise windows of each channel by their maximum or their mean.

Max pooling keeps, from forward, the flat index (h * W + w) of each window's
winner, so backward is a scatter of the output gradient to those places.
Adaptive average pooling is separable: each output is the mean of a block of
rows times a block of columns, so it is two small averaging matrices,
out = Ph @ x @ Pw^T, with PyTorch's exact (possibly overlapping) bins.
"""
from ... import dtypes
from ...autograd.function import Function
from ...ops.util import contiguous
from .util import check_float, pair


def _pool_args(fn, input, kernel_size, stride, padding):
    check_float(input, "input", fn)
    if input.ndim != 4:
        raise ValueError(f"{fn}(): expected a 4-D input (N, C, H, W), got a {input.ndim}-D tensor of shape "
                         f"{tuple(input.shape)}")
    kernel = pair(kernel_size, "kernel_size", fn)
    # stride=None (or an empty list, as PyTorch allows) means stride = kernel_size
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) else \
        pair(stride, "stride", fn)
    padding = pair(padding, "padding", fn)
    if min(kernel) < 1:
        raise ValueError(f"{fn}(): kernel_size must be positive, got {kernel}")
    if min(stride) < 1:
        raise ValueError(f"{fn}(): stride must be positive, got {stride}")
    if min(padding) < 0 or padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{fn}(): padding {padding} must be non-negative and at most half of kernel_size {kernel}")
    h, w = input.shape[2:]
    if kernel[0] > h + 2 * padding[0] or kernel[1] > w + 2 * padding[1]:
        raise ValueError(f"{fn}(): kernel_size {kernel} can't be greater than the padded input size "
                         f"{h + 2 * padding[0]}x{w + 2 * padding[1]} (input shape {tuple(input.shape)}, padding "
                         f"{padding})")
    return kernel, stride, padding


# ------------------------------------------------------------------ max
class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding, return_indices):
        out, argmax = ctx.backend.max_pool2d(x, kernel, stride, padding)  # argmax: int32, in out's layout
        ctx.geometry = (x.shape, kernel, stride, padding)
        ctx.save_for_backward(argmax)
        # a second output only when asked: the engine would otherwise make a zero gradient for it
        return (out, argmax.astype(dtypes.int64.np)) if return_indices else out

    @staticmethod
    def backward(ctx, grad, *_grad_indices):
        (argmax,) = ctx.saved
        gx = ctx.backend.max_pool2d_backward(grad, argmax, *ctx.geometry)
        return gx, None, None, None, None


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """The maximum of each window; with return_indices=True also the flat index
    (h * W + w) of each maximum in its input plane, as int64 (PyTorch's format)."""
    if dilation not in (1, (1, 1), [1, 1]) or ceil_mode:
        raise NotImplementedError("max_pool2d(): dilation != 1 and ceil_mode=True are not supported")
    kernel, stride, padding = _pool_args("max_pool2d", input, kernel_size, stride, padding)
    return MaxPool2d.apply(input, kernel, stride, padding, bool(return_indices))


# ------------------------------------------------------------------ average
class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding, count_include_pad, scale):
        ctx.args = (x.shape, kernel, stride, padding, count_include_pad, scale)
        out = ctx.backend.avg_pool2d(contiguous(ctx.xp, x), kernel, stride, padding, count_include_pad)
        return out if scale is None else out * out.dtype.type(scale)

    @staticmethod
    def backward(ctx, grad):
        x_shape, kernel, stride, padding, count_include_pad, scale = ctx.args
        if scale is not None:
            grad = grad * grad.dtype.type(scale)
        gx = ctx.backend.avg_pool2d_backward(contiguous(ctx.xp, grad), x_shape, kernel, stride, padding,
                                             count_include_pad)
        return gx, None, None, None, None, None


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """The mean of each window; count_include_pad=False divides by the number of
    real (not padding) elements, divisor_override by a fixed number."""
    if ceil_mode:
        raise NotImplementedError("avg_pool2d(): ceil_mode=True is not supported")
    kernel, stride, padding = _pool_args("avg_pool2d", input, kernel_size, stride, padding)
    scale = None
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, int) or divisor_override < 1:
            raise ValueError(f"avg_pool2d(): divisor_override must be a positive int, got {divisor_override!r}")
        # the kernel averages over kh*kw (padding included); rescale that sum to the override
        count_include_pad, scale = True, kernel[0] * kernel[1] / divisor_override
    return AvgPool2d.apply(input, kernel, stride, padding, count_include_pad, scale)


# ------------------------------------------------------------------ adaptive
class AdaptiveAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, output_size):
        h, w = x.shape[2:]
        ph = _bin_matrix(ctx.xp, h, output_size[0], x.dtype)   # (OH, H)
        pw = _bin_matrix(ctx.xp, w, output_size[1], x.dtype)   # (OW, W)
        ctx.save_for_backward(ph, pw)
        return ctx.xp.matmul(ctx.xp.matmul(ph, x), pw.T)

    @staticmethod
    def backward(ctx, grad):
        ph, pw = ctx.saved
        return ctx.xp.matmul(ctx.xp.matmul(ph.T, grad), pw), None


def _bin_matrix(xp, size, out, dtype):
    """Row i averages input positions [floor(i*size/out), ceil((i+1)*size/out))."""
    i = xp.arange(out)
    start = (i * size) // out
    end = ((i + 1) * size + out - 1) // out
    pos = xp.arange(size)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    return inside.astype(dtype) / (end - start).astype(dtype)[:, None]


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed output size (an int, or a pair whose None
    entries keep the input's size), with PyTorch's bin boundaries."""
    check_float(input, "input", "adaptive_avg_pool2d")
    if input.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d(): expected a 4-D input (N, C, H, W), got a {input.ndim}-D tensor "
                         f"of shape {tuple(input.shape)}")
    h, w = input.shape[2:]
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"adaptive_avg_pool2d(): output_size must be an int or a pair, got {output_size!r}")
        output_size = (h if output_size[0] is None else output_size[0], w if output_size[1] is None else output_size[1])
    out = pair(output_size, "output_size", "adaptive_avg_pool2d")
    if min(out) < 1:
        raise ValueError(f"adaptive_avg_pool2d(): output_size must be positive, got {out}")
    if h == 0 or w == 0:
        raise ValueError(f"adaptive_avg_pool2d(): input of shape {tuple(input.shape)} has an empty spatial size")
    if h % out[0] == 0 and w % out[1] == 0:
        # equal, non-overlapping bins: a plain average pooling
        k = (h // out[0], w // out[1])
        return AvgPool2d.apply(input, k, k, (0, 0), True, None)
    return AdaptiveAvgPool2d.apply(input, out)



def _one(v):
    return (1, v[0] if isinstance(v, (tuple, list)) else v)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """max_pool2d over a height of 1: input (N, C, L)."""
    out = max_pool2d(input.unsqueeze(2), _one(kernel_size), None if stride is None else _one(stride),
                     (0, _one(padding)[1]), dilation, ceil_mode, return_indices)
    return tuple(o.squeeze(2) for o in out) if return_indices else out.squeeze(2)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    return avg_pool2d(input.unsqueeze(2), _one(kernel_size), None if stride is None else _one(stride),
                      (0, _one(padding)[1]), ceil_mode, count_include_pad).squeeze(2)
