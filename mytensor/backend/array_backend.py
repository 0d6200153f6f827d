"""Kernels written once against the array API that NumPy and CuPy share.

`ArrayBackend` is complete on its own: the CPU backend is this class on NumPy, with
the convolution of `BlockedConv` (blocked_conv.py). The CUDA backend subclasses it and replaces the hot methods with our own
kernels; everything it does not replace still runs here, through CuPy.

Layouts shared by every backend:
- `im2col` returns columns of shape (C*kh*kw, N*OH*OW), so a whole batch of
  convolutions is one GEMM with the (Cout, C*kh*kw) weight matrix.
- max pooling returns, for every output, the flat index (h*W + w) of the
  input element that won, so backward is a scatter of the output gradient.
- 4-D arrays may be channels-last (`is_channels_last`): logically (N, C, H, W),
  stored as (N, H, W, C). The generic code takes any strides; the CUDA kernels of
  pooling and activations keep that layout, and `conv2d_nhwc` (implicit GEMM, on GPUs
  that have it: `supports_implicit_gemm`) works on the stored (N, H, W, C) arrays.
"""
import functools
import math

import ml_dtypes
import numpy as np

LOW_PRECISION = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def conv_output_size(size, kernel, stride, padding, dilation=1):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def is_channels_last(a):
    """Whether the (N, C, H, W) array `a` is stored channels-last: a transposed view of a
    contiguous (N, H, W, C) array and not C-contiguous as well (as when C or H*W is 1)."""
    return a.ndim == 4 and not a.flags.c_contiguous and a.transpose(0, 2, 3, 1).flags.c_contiguous


def keep_layout(fn, a, b):
    """fn(a, b) for an elementwise fn, channels-last when both operands are channels-last
    arrays of one shape (CuPy's elementwise results are C-ordered whatever the inputs)."""
    if getattr(a, "ndim", 0) == 4 and getattr(a, "shape", None) == getattr(b, "shape", None) and \
            is_channels_last(a) and is_channels_last(b):
        return fn(a.transpose(0, 2, 3, 1), b.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return fn(a, b)


def _reflect(xp, i, n):
    """Positions up to one side beyond [0, n) mirrored back into it, the border itself not repeated
    (PyTorch's "reflect" padding): -1 -> 1, n -> n - 2."""
    return xp.where(i < 0, -i, xp.where(i >= n, 2 * (n - 1) - i, i))


def float32_math(method):
    """Run a kernel on 16-bit float arrays in float32 and round its float outputs back
    once at the end, as PyTorch's kernels do: chained float16/bfloat16 steps would
    round at every step (and bfloat16 sums lose all digits past 256 equal terms)."""
    @functools.wraps(method)
    def run(self, x, *args, **kwargs):
        low = x.dtype if x.dtype in LOW_PRECISION else None
        if low is None:
            return method(self, x, *args, **kwargs)
        args = [a.astype(np.float32) if getattr(a, "dtype", None) == low else a for a in args]
        out = method(self, x.astype(np.float32), *args, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.astype(low) if o.dtype.kind == "f" else o for o in out)
        return out.astype(low)
    return run


class ArrayBackend:
    name = "array"

    def __init__(self, xp, device, erf):
        self.xp = xp
        self.ndarray = xp.ndarray  # read by every op: what needs no wrapping into an array
        self.device = device
        self._erf = erf  # NumPy has no erf; SciPy's and CuPy's (cupyx) serve GELU
        self.seed(0)

    # ---------------------------------------------------------------- memory
    def asarray(self, data, dtype=None):
        return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, arr):
        return np.asarray(arr)

    def synchronize(self):
        pass

    # ---------------------------------------------------------------- random
    def seed(self, seed):
        self.rng = self.xp.random.default_rng(seed)

    def randn(self, shape, dtype):
        return self.rng.standard_normal(shape, dtype=np.float64).astype(dtype, copy=False)

    def rand(self, shape, dtype):
        return self.rng.random(shape, dtype=np.float64).astype(dtype, copy=False)

    def randint(self, low, high, shape):
        return self.rng.integers(low, high, size=shape, dtype=np.int64)

    def permutation(self, n):
        return self.rng.permutation(n)

    def generator(self, seed):
        """A random generator of the array module apart from the global one: for streams that
        depend on their own seed alone (a device loader's epochs)."""
        return self.xp.random.default_rng(seed)

    def dropout_mask(self, shape, p, dtype):
        """Zeros with probability p, else 1/(1-p): the output is x * mask."""
        keep = self.rand(shape, np.float32) >= p
        return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))

    # ------------------------------------------------------- matrix products
    def matmul(self, a, b):
        """`a @ b` for the GEMMs of linear layers, convolutions and `matmul` (a bfloat16
        product accumulates in float32 and is rounded at the end, as on tensor cores)."""
        out = self.xp.matmul(a, b)
        return out if out.dtype == a.dtype else out.astype(a.dtype)

    def gemm(self, a, b, alpha=1.0, c=None, beta=0.0):
        """BLAS's C = alpha a @ b + beta c for matrices or stacks of them, in a's dtype: for 16-bit
        operands the products are summed in float32 and the sum, with beta c added, rounded once,
        as a 16-bit GEMM with float32 compute does on tensor cores."""
        wide = np.dtype(np.float32) if a.dtype in LOW_PRECISION else a.dtype
        out = self.xp.matmul(a.astype(wide, copy=False), b.astype(wide, copy=False)) * wide.type(alpha)
        if c is not None:
            out += c.astype(wide, copy=False) * wide.type(beta)
        return out.astype(a.dtype, copy=False)

    records_graphs = False  # whether `capture_graph` can record (GPUs only)

    def capture_graph(self, fn):
        """Record one call of `fn` for cheap replay: an object with `outputs` (what `fn` returned) and
        `replay()`, which reruns the recorded device work, rewriting the outputs. Only GPUs have such graphs."""
        raise RuntimeError(f"graph capture needs a CUDA device, not {self.device}")

    # ----------------------------------------------------------- convolution
    def _windows(self, xp_padded, kh, kw, stride, dilation, oh, ow):
        """A strided view (N, C, kh, kw, OH, OW) of every receptive field."""
        n, c, _, _ = xp_padded.shape
        sn, sc, sh, sw = xp_padded.strides
        return self.xp.lib.stride_tricks.as_strided(
            xp_padded, (n, c, kh, kw, oh, ow),
            (sn, sc, sh * dilation[0], sw * dilation[1], sh * stride[0], sw * stride[1]))

    def _pad(self, x, padding, value=0):
        ph, pw = padding
        if ph == 0 and pw == 0:
            return x
        return self.xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)

    def im2col(self, x, kernel, stride, padding, dilation):
        """Each kernel offset (i, j) reads one strided slice of the padded input;
        one copy per offset beats NumPy's copy of a 6-D transposed window view."""
        n, c, h, w = x.shape
        kh, kw = kernel
        (sh, sw), (dh, dw) = stride, dilation
        oh = conv_output_size(h, kh, sh, padding[0], dh)
        ow = conv_output_size(w, kw, sw, padding[1], dw)
        padded = self._pad(x, padding)
        cols = self.xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                cols[:, i, j] = padded[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                       j * dw: j * dw + sw * (ow - 1) + 1: sw].transpose(1, 0, 2, 3)
        return cols.reshape(c * kh * kw, n * oh * ow)

    def col2im(self, cols, x_shape, kernel, stride, padding, dilation):
        """Adjoint of im2col: every column entry is added back where it was read."""
        n, c, h, w = x_shape
        kh, kw = kernel
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        oh = conv_output_size(h, kh, sh, ph, dh)
        ow = conv_output_size(w, kw, sw, pw, dw)
        cols = cols.reshape(c, kh, kw, n, oh, ow)
        out = self.xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
        for i in range(kh):
            for j in range(kw):
                out[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw] += \
                    cols[:, i, j].transpose(1, 0, 2, 3)
        return out[:, :, ph: ph + h, pw: pw + w]

    # Whether the backend has `conv2d`, `conv2d_weight_grad` and `conv2d_input_grad` (the CPU's
    # BlockedConv); without them conv2d is one im2col of the whole batch and one GEMM per group.
    conv_in_blocks = False

    def supports_implicit_gemm(self, dtype, in_channels, out_channels, groups):
        """Whether `conv2d_nhwc` and its gradients cover such a convolution (only on a GPU)."""
        return False

    def swap_leading(self, x):
        """x (A, B, ...) as a contiguous (B, A, ...): the layout change between a convolution's
        GEMM output (Cout, N, OH, OW) and its tensors (N, Cout, OH, OW)."""
        return self.xp.ascontiguousarray(x.swapaxes(0, 1))

    # --------------------------------------------------------------- pooling
    def max_pool2d(self, x, kernel, stride, padding):
        """Separable: the running maximum over the kw column offsets of every padded row, then
        over the kh row offsets of those, each a strided slice (no copy of the windows). The
        winner is the first maximum in row-major window order (the first row holding the
        maximum, its first column), and a NaN wins over numbers, as NumPy's argmax."""
        xp = self.xp
        n, c, h, w = x.shape
        (kh, kw), (sh, sw) = kernel, stride
        oh, ow = conv_output_size(h, kh, sh, padding[0]), conv_output_size(w, kw, sw, padding[1])
        padded = self._pad(x, padding, -np.inf)
        row_max, col = self._first_max([padded[..., j: j + sw * (ow - 1) + 1: sw] for j in range(kw)])
        rows = [slice(i, i + sh * (oh - 1) + 1, sh) for i in range(kh)]
        out, row = self._first_max([row_max[:, :, r] for r in rows])
        col_of_row = col[:, :, rows[0]]
        for i in range(1, kh):  # the column of the winning row (exact in unsigned arithmetic that wraps)
            col_of_row = col_of_row + (row == i) * (col[:, :, rows[i]] - col_of_row)
        top = xp.arange(oh, dtype=np.int32).reshape(oh, 1) * sh - padding[0]
        left = xp.arange(ow, dtype=np.int32).reshape(1, ow) * sw - padding[1]
        flat = (row.astype(np.int32) + top) * w + left + col_of_row
        return (out.copy() if kh * kw == 1 else out), flat  # a 1x1 window's maximum is a view of x

    def _first_max(self, views):
        """The elementwise maximum of `views` and the index of the first one holding it (in the
        smallest integer type: these arrays are as large as the maxima)."""
        xp = self.xp
        index = np.uint8 if len(views) <= 256 else np.int32
        out, arg = views[0], xp.zeros(views[0].shape, dtype=index)
        for k, v in enumerate(views[1:], 1):
            best = xp.maximum(out, v)  # NaN-propagating, so a NaN stays the maximum
            wins = (best != out) & (out == out)  # a larger value, or the first NaN
            arg = xp.maximum(arg, wins * index(k))  # k exceeds every earlier index (cheaper than where)
            out = best
        return out, arg

    def max_pool2d_backward(self, grad_out, argmax, x_shape, kernel=None, stride=None, padding=None):
        """The scatter of grad_out to the winners: an assignment where windows do not overlap
        (each input wins at most once), else a sum (the padding serves only kernels that
        gather instead)."""
        n, c, h, w = x_shape
        flat = (argmax.reshape(n * c, -1) + (self.xp.arange(n * c) * (h * w))[:, None]).ravel()
        if kernel is not None and kernel[0] <= stride[0] and kernel[1] <= stride[1]:
            dx = self.xp.zeros(n * c * h * w, dtype=grad_out.dtype)
            dx[flat] = grad_out.ravel()
            return dx.reshape(x_shape)
        dx = self.xp.bincount(flat, weights=grad_out.ravel(), minlength=n * c * h * w)
        return dx.astype(grad_out.dtype, copy=False).reshape(x_shape)

    @float32_math
    def avg_pool2d(self, x, kernel, stride, padding, count_include_pad=True):
        n, c, h, w = x.shape
        (kh, kw), (sh, sw) = kernel, stride
        oh, ow = conv_output_size(h, kh, sh, padding[0]), conv_output_size(w, kw, sw, padding[1])
        win = self._windows(self._pad(x, padding), kh, kw, stride, (1, 1), oh, ow)
        total = win.sum(axis=(2, 3))
        return total / self._pool_divisor(x_shape=x.shape, kernel=kernel, stride=stride, padding=padding,
                                          count_include_pad=count_include_pad, dtype=x.dtype)

    def _pool_divisor(self, x_shape, kernel, stride, padding, count_include_pad, dtype):
        """Elements each averaging window divides by, shape (OH, OW) or a scalar."""
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        if count_include_pad or (ph == 0 and pw == 0):
            return dtype.type(kh * kw)
        ones = self.xp.ones((1, 1) + tuple(x_shape[2:]), dtype=dtype)
        oh = conv_output_size(x_shape[2], kh, sh, ph)
        ow = conv_output_size(x_shape[3], kw, sw, pw)
        return self._windows(self._pad(ones, padding), kh, kw, stride, (1, 1), oh, ow).sum(axis=(2, 3))[0, 0]

    @float32_math
    def avg_pool2d_backward(self, grad_out, x_shape, kernel, stride, padding, count_include_pad=True):
        n, c, h, w = x_shape
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        g = grad_out / self._pool_divisor(x_shape, kernel, stride, padding, count_include_pad, grad_out.dtype)
        dx = self.xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=grad_out.dtype)
        oh, ow = g.shape[2:]
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw] += g
        return dx[:, :, ph: ph + h, pw: pw + w]

    # ----------------------------------------------------------- arithmetic
    def add(self, a, b):
        """a + b of arrays or numbers, broadcasting, channels-last kept (`keep_layout`)."""
        return keep_layout(self.xp.add, a, b)

    # ----------------------------------------------------------- activations
    def copy(self, a, channels_last=None):
        """A copy of `a`, channels-last or C-contiguous as asked (None: laid out as `a` is, a layout
        other than those two kept by strides, a broadcast made dense). A channels-last copy is made
        as the contiguous (N, H, W, C) array it is, and a change of layout by `ascontiguousarray`: an
        elementwise copy walking the (N, C, H, W) index would touch one element per 32-byte sector on
        a GPU."""
        if channels_last is None:
            channels_last = is_channels_last(a)
            if not channels_last and not a.flags.c_contiguous:
                return self.xp.array(a, copy=True)
        if channels_last:
            nhwc = a.transpose(0, 2, 3, 1)
            return (nhwc.copy() if nhwc.flags.c_contiguous else self.ascontiguousarray(nhwc)).transpose(0, 3, 1, 2)
        return a.copy() if a.flags.c_contiguous else self.ascontiguousarray(a)

    def ascontiguousarray(self, a):
        """`a` itself when C-contiguous, else a C-contiguous copy (on the GPU, a layout change
        between NCHW and channels-last runs as a tiled transpose)."""
        return self.xp.ascontiguousarray(a)

    def relu(self, x):
        return self.xp.maximum(x, 0)

    def relu_backward(self, grad, y):
        return grad * (y > 0)

    def leaky_relu(self, x, slope):
        return self.xp.where(x > 0, x, x * x.dtype.type(slope))

    def leaky_relu_backward(self, grad, x, slope):
        return self.xp.where(x > 0, grad, grad * grad.dtype.type(slope))

    @float32_math
    def sigmoid(self, x):
        xp = self.xp
        # split by sign so exp never overflows
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)

    @float32_math
    def sigmoid_backward(self, grad, y):
        return grad * y * (1 - y)

    @float32_math
    def tanh(self, x):
        return self.xp.tanh(x)

    @float32_math
    def tanh_backward(self, grad, y):
        return grad * (1 - y * y)

    @float32_math
    def gelu(self, x, approximate="none"):
        xp, t = self.xp, x.dtype.type
        if approximate == "tanh":
            return t(0.5) * x * (1 + xp.tanh(t(math.sqrt(2 / math.pi)) * (x + t(0.044715) * x ** 3)))
        return t(0.5) * x * (1 + self._erf(x * t(1 / math.sqrt(2))))

    @float32_math
    def gelu_backward(self, grad, x, approximate="none"):
        xp, t = self.xp, x.dtype.type
        if approximate == "tanh":
            k = t(math.sqrt(2 / math.pi))
            inner = k * (x + t(0.044715) * x ** 3)
            th = xp.tanh(inner)
            d = t(0.5) * (1 + th) + t(0.5) * x * (1 - th * th) * k * (1 + t(3 * 0.044715) * x * x)
            return grad * d
        cdf = t(0.5) * (1 + self._erf(x * t(1 / math.sqrt(2))))
        pdf = xp.exp(t(-0.5) * x * x) * t(1 / math.sqrt(2 * math.pi))
        return grad * (cdf + x * pdf)

    # ------------------------------------------------- softmax cross-entropy
    @float32_math
    def log_softmax(self, x, axis):
        xp = self.xp
        m = x.max(axis=axis, keepdims=True)
        shifted = x - m
        return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))

    @float32_math
    def softmax_cross_entropy(self, logits, target, label_smoothing=0.0, ignore_index=-100):
        """Per-sample loss of class-index targets for logits (N, C); also returns
        the softmax probabilities that backward needs."""
        xp = self.xp
        n, c = logits.shape
        logp = self.log_softmax(logits, 1)
        valid = target != ignore_index
        safe_t = xp.where(valid, target, 0)
        nll = -xp.take_along_axis(logp, safe_t[:, None], axis=1)[:, 0]
        if label_smoothing:
            eps = logits.dtype.type(label_smoothing)
            nll = (1 - eps) * nll - eps / c * logp.sum(axis=1)
        return xp.where(valid, nll, 0).astype(logits.dtype, copy=False), xp.exp(logp)

    def reduce_class_loss(self, loss, target, ignore_index, mean):
        """(the per-sample losses summed, divided by the number of targets that are not
        ignore_index when `mean`; that number, in loss's dtype, for the backward's division).
        All targets ignored: the mean is NaN, as in PyTorch."""
        count = (target != ignore_index).sum().astype(loss.dtype)
        total = loss.sum()
        if not mean:
            return total, count
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count, count

    @float32_math
    def softmax_cross_entropy_backward(self, grad_loss, probs, target, label_smoothing=0.0, ignore_index=-100,
                                       count=None):
        """d(loss_i)/d(logits_i) = p - smoothed one-hot(target), scaled by grad_loss[i] (a scalar
        for a reduced loss), divided by `count` (reduce_class_loss's, for a mean; by 1 if it is 0)."""
        xp = self.xp
        n, c = probs.shape
        valid = target != ignore_index
        safe_t = xp.where(valid, target, 0)
        eps = probs.dtype.type(label_smoothing)
        g = probs - eps / c
        g[xp.arange(n), safe_t] -= 1 - eps
        if count is not None:
            grad_loss = grad_loss / xp.where(count == 0, 1, count).astype(grad_loss.dtype, copy=False)
        return g * (grad_loss * valid)[:, None]

    # ---------------------------------------------------------- augmentation
    def augment_images(self, images, index, scale, shift, dtype, translate=None, flip=None, reflect=False,
                       cutout=None, cutout_size=0):
        """A batch (B, C, H, W) of `dtype` from the uint8 images (N, C, H, W) at `index` (B,), each moved
        by translate[b] = (dy, dx) (out[y, x] reads (y + dy, x + dx); beyond the border the pixel
        mirrored across it with `reflect`, |d| < the side, else 0), mirrored left-right where flip[b],
        normalised as pixel * scale[c] + shift[c] in float32, and 0 in the square of side `cutout_size`
        whose corner is cutout[b] = (top, left). None: no shift, flip or cutout. (kernels/augment.cu)"""
        xp = self.xp
        _, c, h, w = images.shape
        b = index.shape[0]
        rows = xp.broadcast_to(xp.arange(h), (b, h))
        cols = xp.broadcast_to(xp.arange(w), (b, w))
        if translate is not None:
            rows, cols = rows + translate[:, :1], cols + translate[:, 1:]
        if reflect:
            rows, cols = _reflect(xp, rows, h), _reflect(xp, cols, w)
        inside = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < w))[:, None, None, :]
        rows, cols = xp.clip(rows, 0, h - 1), xp.clip(cols, 0, w - 1)
        if flip is not None:
            cols = xp.where(flip[:, None].astype(bool), w - 1 - cols, cols)
        pixels = images[index[:, None, None, None], xp.arange(c)[None, :, None, None], rows[:, None, :, None],
                        cols[:, None, None, :]]
        pixels = xp.where(inside, pixels, 0).astype(np.float32)
        out = pixels * scale.astype(np.float32)[:, None, None] + shift.astype(np.float32)[:, None, None]
        if cutout is not None:
            span = xp.arange(max(h, w))
            top, left = cutout[:, :1], cutout[:, 1:]
            in_rows = (span[:h] >= top) & (span[:h] < top + cutout_size)
            in_cols = (span[:w] >= left) & (span[:w] < left + cutout_size)
            out = xp.where(in_rows[:, None, :, None] & in_cols[:, None, None, :], np.float32(0), out)
        return out.astype(dtype, copy=False)

    # ------------------------------------------------------------ batch norm
    # x and the gradients are (N, C, L). For a 16-bit x the statistics, weight and bias are
    # float32 (mixed precision keeps parameters in float32); y and dx have x's dtype.
    # `activation` (None or one of BN_ACTIVATIONS) is applied to the batch norm's output z in
    # the same passes; backward takes the gradient back through it at z, recomputed from x.
    BN_ACTIVATIONS = ("relu", "gelu", "gelu_tanh")

    def activation(self, z, activation):
        """activation(z) for one of BN_ACTIVATIONS, or z itself for None."""
        if activation is None:
            return z
        if activation == "relu":
            return self.relu(z)
        return self.gelu(z, "tanh" if activation == "gelu_tanh" else "none")

    def activation_backward(self, grad, z, activation):
        """The gradient at the activation's input z, given `grad` at its output."""
        if activation is None:
            return grad
        if activation == "relu":
            return self.relu_backward(grad, z)  # z > 0 exactly where relu(z) > 0
        return self.gelu_backward(grad, z, "tanh" if activation == "gelu_tanh" else "none")

    def batch_norm_train(self, x, weight, bias, eps, activation=None, running=None):
        """y, the batch mean and 1/sqrt(var + eps) per channel. y is made in place in the centred
        x, and the sums of products are einsums: no temporary beyond that one array.
        `running` (running_mean, running_var, momentum) moves the running statistics towards the
        batch's in place, the variance's with the unbiased batch variance, as PyTorch does."""
        xp = self.xp
        xf = x.astype(weight.dtype, copy=False)
        mean = xf.mean(axis=(0, 2))
        y = xf - mean[:, None]
        count = x.shape[0] * x.shape[2]
        var = xp.einsum("ncl,ncl->c", y, y) / weight.dtype.type(count)
        invstd = 1 / xp.sqrt(var + weight.dtype.type(eps))
        if running is not None:
            self.update_running_stats(running, mean, var, count)
        y *= (invstd * weight)[:, None]
        y += bias[:, None]
        return self.activation(y, activation).astype(x.dtype, copy=False), mean, invstd

    def batch_norm_apply(self, x, scale, shift, activation=None):
        """activation(x * scale[c] + shift[c]) for x (N, C, L), in x's dtype, the product in
        scale's: batch norm with statistics known beforehand (evaluation), where
        scale = weight / sqrt(var + eps) and shift = bias - mean * scale."""
        z = x.astype(scale.dtype, copy=False) * scale[:, None] + shift[:, None]
        return self.activation(z.astype(x.dtype, copy=False), activation)

    def update_running_stats(self, running, mean, var, count):
        """running_mean <- (1 - m) running_mean + m mean, and the same for running_var with the
        unbiased batch variance var * count / (count - 1); in place."""
        running_mean, running_var, momentum = running
        running_mean *= 1 - momentum
        running_mean += (momentum * mean).astype(running_mean.dtype, copy=False)
        running_var *= 1 - momentum
        running_var += (momentum * count / (count - 1) * var).astype(running_var.dtype, copy=False)

    def batch_norm_backward(self, grad, x, weight, bias, mean, invstd, activation=None):
        """dx, dweight, dbias. dx = weight * invstd * (grad - mean(grad) - xhat * mean(grad * xhat)),
        made in place in xhat."""
        m = weight.dtype.type(grad.shape[0] * grad.shape[2])
        grad = grad.astype(weight.dtype, copy=False)
        xhat = x.astype(weight.dtype, copy=False) - mean[:, None]
        xhat *= invstd[:, None]
        if activation is not None:
            grad = self.activation_backward(grad, xhat * weight[:, None] + bias[:, None], activation)
        dbias = grad.sum(axis=(0, 2))
        dweight = self.xp.einsum("ncl,ncl->c", grad, xhat)
        dx = xhat
        dx *= (-dweight / m)[:, None]
        dx += grad
        dx -= (dbias / m)[:, None]
        dx *= (weight * invstd)[:, None]
        return dx.astype(x.dtype, copy=False), dweight, dbias

    # ------------------------------------------------------ optimizer updates
    # The hyperparameters of a step come as `scalars`, a float64 array made by
    # `write_scalars`; on a GPU it lives in device memory, so an update captured
    # in a CUDA graph reads the values of the step it is replayed for.
    def write_scalars(self, values, out=None):
        """`values` (host floats, at most 8) written into the float64 array `out`
        (a new one when None), without waiting for the device. Returns `out`."""
        if out is None:
            out = self.xp.zeros(len(values), dtype=np.float64)
        out[:len(values)] = values
        return out

    # ------------------------------------------------------------ loss scaling
    def unscale_grads(self, grads, inv_scale):
        """grads *= inv_scale in place; returns a float32 device scalar, 1 if any gradient
        holds an inf or nan, else 0 (`amp.GradScaler`; nothing is read back)."""
        xp = self.xp
        found = xp.zeros((), dtype=np.float32)
        for g in grads:
            g *= inv_scale.astype(g.dtype)
            found = xp.maximum(found, xp.logical_not(xp.isfinite(g)).any().astype(np.float32))
        return found

    def update_loss_scale(self, scale, tracker, found_inf, growth, backoff, interval):
        """In place: scale *= backoff and tracker = 0 after a step with inf/nan gradients;
        else tracker += 1, and at `interval` good steps scale *= growth (if that stays
        finite, as in PyTorch) and tracker = 0."""
        xp = self.xp
        bad = found_inf != 0
        grow = xp.logical_and(xp.logical_not(bad), tracker + 1 >= interval)
        with np.errstate(over="ignore"):
            grown = scale * np.float32(growth)
        grown = xp.where(xp.isfinite(grown), grown, scale)
        scale[...] = xp.where(bad, scale * np.float32(backoff), xp.where(grow, grown, scale))
        tracker[...] = xp.where(xp.logical_or(bad, grow), 0, tracker + 1)

    def unless_flag(self, skip, arrays, update):
        """Run `update` (in place on `arrays`) unless the device flag `skip` is set: the old
        values are put back where it is, without reading the flag on the host."""
        if skip is None:
            return update()
        arrays = [a for a in arrays if a is not None]
        old = [a.copy() for a in arrays]
        update()
        for a, o in zip(arrays, old):
            a[...] = self.xp.where(skip != 0, o, a)

    def sgd_update(self, params, grads, bufs, scalars, has_weight_decay, nesterov, first_step, skip=None):
        """One SGD step for every parameter, in place (PyTorch's formulation).
        scalars: lr, momentum, dampening, weight_decay; `bufs` are None without momentum.
        The flags are host values: reading the scalars back would wait for the device.
        With `skip` (a device scalar), nothing changes where it is not 0."""
        self.unless_flag(skip, params + bufs, lambda: self._sgd(params, grads, bufs, scalars, has_weight_decay, nesterov,
                                                            first_step))

    def _sgd(self, params, grads, bufs, scalars, has_weight_decay, nesterov, first_step):
        lr, momentum, dampening, weight_decay = (scalars[i] for i in range(4))
        for p, g, buf in zip(params, grads, bufs):
            t = p.dtype
            if has_weight_decay:
                g = g + weight_decay.astype(t) * p
            if buf is not None:
                if first_step:
                    buf[...] = g
                else:
                    buf *= momentum.astype(t)
                    buf += (1 - dampening).astype(t) * g
                g = g + momentum.astype(t) * buf if nesterov else buf
            p -= lr.astype(t) * g

    def adam_update(self, params, grads, exp_avgs, exp_avg_sqs, scalars, has_weight_decay, decoupled, skip=None):
        """One Adam (decoupled=False) or AdamW (decoupled=True) step, in place.
        scalars: lr/bc1, beta1, beta2, sqrt(bc2), eps, weight_decay, 1 - lr*weight_decay,
        where bc = 1 - beta^step (see `optim.adam.adam_scalars`); `skip` as for SGD."""
        self.unless_flag(skip, params + exp_avgs + exp_avg_sqs, lambda: self._adam(
            params, grads, exp_avgs, exp_avg_sqs, scalars, has_weight_decay, decoupled))

    def _adam(self, params, grads, exp_avgs, exp_avg_sqs, scalars, has_weight_decay, decoupled):
        lr_bc1, beta1, beta2, sqrt_bc2, eps, weight_decay, decay = (scalars[i] for i in range(7))
        for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
            t = p.dtype
            if has_weight_decay and decoupled:
                p *= decay.astype(t)
            elif has_weight_decay:
                g = g + weight_decay.astype(t) * p
            m *= beta1.astype(t)
            m += (1 - beta1).astype(t) * g
            v *= beta2.astype(t)
            v += (1 - beta2).astype(t) * g * g
            denom = self.xp.sqrt(v) / sqrt_bc2.astype(t) + eps.astype(t)
            p -= lr_bc1.astype(t) * m / denom

    def muon_update(self, params, grads, bufs, scalars, lr_ratios, nesterov, ns_coefficients, ns_steps, eps,
                    normalize=False, skip=None):
        """One Muon step for every parameter, in place (`optim.Muon`'s formulation). scalars: lr,
        momentum, weight_decay; lr_ratios: each parameter's factor on the lr; `normalize`: each
        weight first rescaled to the Frobenius norm sqrt(rows), its norm never read on the host;
        `skip` as for SGD."""
        self.unless_flag(skip, params + bufs, lambda: self._muon(params, grads, bufs, scalars, lr_ratios, nesterov,
                                                             ns_coefficients, ns_steps, eps, normalize))

    def _muon(self, params, grads, bufs, scalars, lr_ratios, nesterov, ns_coefficients, ns_steps, eps, normalize):
        lr, momentum, weight_decay = (scalars[i] for i in range(3))
        for p, g, buf, ratio in zip(params, grads, bufs, lr_ratios):
            t = p.dtype
            buf += (1 - momentum).astype(t) * (g - buf)  # lerp toward the gradient
            u = g + momentum.astype(t) * (buf - g) if nesterov else buf
            o = self.newton_schulz(u.reshape(u.shape[0], -1), ns_coefficients, ns_steps, eps)
            if normalize:
                p *= (np.sqrt(p.shape[0]) / self.xp.sqrt((p * p).sum())).astype(t)
            p *= (1 - lr * weight_decay).astype(t)
            p -= (lr * ratio).astype(t) * o.reshape(p.shape).astype(t)

    def newton_schulz(self, g, coefficients, steps, eps):
        """A matrix near the orthogonal factor U V^T of g = U S V^T (Keller Jordan's quintic
        iteration, PyTorch's Muon), in bfloat16: g scaled to a spectral norm of at most 1, then
        `steps` of X <- a X + (b A + c A A) X with A = X X^T, which drives every singular value
        toward 1. Each of A, b A + c A A and a X + (..) X is one GEMM (`gemm`): products of
        bfloat16 values summed in float32, the scaled term added, the result rounded once."""
        bf16 = LOW_PRECISION[1]
        tall = g.shape[0] > g.shape[1]
        x = (g.T if tall else g).astype(bf16).astype(np.float32)
        x = (x / self.xp.maximum(self.xp.sqrt((x * x).sum()), np.float32(eps))).astype(bf16)
        x = self.newton_schulz_steps(x, coefficients, steps)
        return x.T if tall else x

    def newton_schulz_steps(self, x, coefficients, steps):
        """The iteration on x, bfloat16 matrices (..., r, c) with r <= c, already scaled."""
        a, b, c = coefficients
        for _ in range(steps):
            gram = self.gemm(x, x.swapaxes(-1, -2))
            poly = self.gemm(gram, gram, c, gram, b)
            x = self.gemm(poly, x, 1.0, x, a)
        return x
