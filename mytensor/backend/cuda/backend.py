"""`CUDABackend`: `ArrayBackend` on CuPy, its hot operations launched as our own kernels."""
import itertools
import os
from collections import OrderedDict, deque

import numpy as np

from .. import capture
from ..array_backend import LOW_PRECISION, ArrayBackend, conv_output_size, is_channels_last, keep_layout
from ..device import Device
from .cublas import _Cublas
from .graphs import CUDAGraph
from .implicit_gemm import ImplicitGemmConvolutions
from .kernels import _CTYPES, _WIDE, _kernel_modules

_INSTALL_HINT = ("device='cuda' needs CuPy: pip install mytensor[cuda] (CUDA 12) or mytensor[cuda13] "
                 "(CUDA 13), on a machine with an NVIDIA GPU and driver")

_BLOCK = 256
# the codes of batch_norm.cu's fused activations (ACT_* in activation.cuh), in BN_ACTIVATIONS' order
_BN_ACTIVATION_CODES = {None: 0, **{a: i + 1 for i, a in enumerate(ArrayBackend.BN_ACTIVATIONS)}}
_MASK64 = (1 << 64) - 1


def _transposed_view(a):
    """(B, R, S) when the 4-D array `a` views a contiguous (B, R, S) array with its last two axes
    swapped: a channels-last (N, C, H, W) view of (N, H*W, C), or an (N, H, W, C) view of an
    NCHW (N, C, H*W); else None. Its contiguous copy is then a batched transpose."""
    if a.ndim != 4 or a.size == 0 or any(st % a.itemsize for st in a.strides):
        return None
    n, d1, d2, d3 = a.shape
    strides = tuple(st // a.itemsize for st in a.strides)
    if strides == (d1 * d2 * d3, 1, d3 * d1, d1) and d2 * d3 < 65536 * 32:  # channels-last NCHW view
        r, s = d2 * d3, d1
    elif strides == (d1 * d2 * d3, d2, 1, d1 * d2) and d3 < 65536 * 32:  # NHWC view of NCHW
        r, s = d3, d1 * d2
    else:
        return None
    return (n, r, s) if n < 65536 else None


def _wide_shape(p):
    """(rows, columns) of the wide matrix Muon orthogonalises for parameter p: (p.shape[0], the
    rest), transposed when it has more rows than columns."""
    rows, cols = int(p.shape[0]), p.size // int(p.shape[0])
    return (min(rows, cols), max(rows, cols))


def _import_cupy():
    try:
        import cupy
        import cupyx.scipy.special  # noqa: F401  (erf for GELU)
    except ImportError as e:
        raise RuntimeError(_INSTALL_HINT) from e
    return cupy


def is_available():
    """True when CuPy imports and sees at least one CUDA GPU."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, missing driver or libraries, no device
        return False


class CUDABackend(ImplicitGemmConvolutions, ArrayBackend):
    name = "cuda"

    def __init__(self, device=None):
        cupy = _import_cupy()
        device = Device("cuda", 0) if device is None else device
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # no driver, or the driver sees no device
            raise RuntimeError(f"no CUDA GPU found ({e}); {_INSTALL_HINT}") from e
        if count == 0:
            raise RuntimeError(f"no CUDA GPU found; {_INSTALL_HINT}")
        if device.index >= count:
            raise RuntimeError(f"{device} requested but only {count} CUDA GPU(s) found")
        import cupyx.scipy.special
        self.cupy = cupy
        self._cp_device = cupy.cuda.Device(device.index)
        self._kernels = _kernel_modules(cupy)
        self._multiprocessors = self._cp_device.attributes["MultiProcessorCount"]
        self._max_blocks = 32 * self._multiprocessors
        # Hopper (sm_90) runs implicit_gemm_wgmma.cu's warpgroup instructions; others implicit_gemm.cu
        self.use_wgmma = self.compute_capability == (9, 0)
        self._conv_choices = {}  # convolution shape -> the kernel benchmark mode found fastest
        self._tables = OrderedDict()  # optimizer pointer tables, keyed by pointers and sizes
        self._staging = deque()  # (event, pinned buffer) of host-to-device copies in flight
        # what the copies recorded in a graph read: `capture_graph` hands them to its graph; those of
        # captures started elsewhere (raw CUDA runtime calls) stay here for the backend's life
        self._graph_buffers = []
        self._cublas = None  # our own cuBLAS handle, made at the first matrix product
        with self._cp_device:
            super().__init__(cupy, device, erf=cupyx.scipy.special.erf)

    @property
    def compute_capability(self):
        """(major, minor) of the GPU: 8.0 and later have bfloat16 tensor cores."""
        cc = int(self._cp_device.compute_capability)
        return cc // 10, cc % 10

    # ---------------------------------------------------------------- memory
    def asarray(self, data, dtype=None):
        """NumPy arrays are copied through pinned memory, asynchronously: the host does not
        wait for the work already queued on the GPU, so a training loop feeding batches keeps
        running ahead of it. Anything else (lists, numbers, CuPy arrays) goes through CuPy."""
        if isinstance(data, np.ndarray) and (data.dtype.kind in "biuf" or data.dtype in LOW_PRECISION) \
                and data.dtype.isnative \
                and not self.cupy.cuda.get_current_stream().is_capturing():
            return self._upload(np.asarray(data, dtype=dtype, order="C"))  # (ascontiguousarray makes 0-d 1-d)
        with self._cp_device:
            return self.cupy.asarray(data, dtype=dtype)

    def _upload(self, host):
        """A device copy of the contiguous array `host`: the host copies it into a pinned
        buffer and queues the DMA on the current stream. The buffer is kept until the copy is
        done (an event says when; finished ones are dropped at the next upload), or, inside a
        graph capture, where the copy becomes a node of the graph, as long as the graph."""
        cupy = self.cupy
        with self._cp_device:
            out = cupy.empty(host.shape, host.dtype)
            if not host.nbytes:
                return out
            mem = cupy.cuda.alloc_pinned_memory(host.nbytes)
            np.frombuffer(mem, host.dtype, host.size)[...] = host.reshape(-1)
            stream = cupy.cuda.get_current_stream()
            # the runtime's copy, not `out.set`: CuPy refuses host copies during a capture
            cupy.cuda.runtime.memcpyAsync(out.data.ptr, mem.ptr, host.nbytes, cupy.cuda.runtime.memcpyHostToDevice,
                                          stream.ptr)
            if stream.is_capturing():
                self._graph_buffers.append((mem, out))
            else:
                self._staging.append((stream.record(), mem))
        while self._staging and self._staging[0][0].done:
            self._staging.popleft()
        return out

    def to_numpy(self, arr):
        capture.forbid("reading a tensor's value on the host (.item(), .tolist(), .numpy(), float(), print, "
                       "`if tensor:`)", "Return the tensor from the function and read it after the call.")
        return self.cupy.asnumpy(arr)

    def synchronize(self):
        capture.forbid("waiting for the GPU (synchronize)", "Synchronize after the call.")
        self._cp_device.synchronize()

    records_graphs = True

    def capture_graph(self, fn):
        outer, self._graph_buffers = self._graph_buffers, []
        try:
            with self._cp_device, capture.recording():
                graph = CUDAGraph(self.cupy, fn)
        except capture.GraphCaptureError:
            raise
        except RuntimeError as e:  # CUDA's refusal (a CUDARuntimeError), or CuPy's of a copy to the host
            if "captur" not in str(e).lower():  # "...Capture..." from CUDA, "...is capturing..." from CuPy
                raise
            raise capture.GraphCaptureError(
                f"CUDA could not record the function as a graph ({e}): it did something that waits for the GPU "
                f"or reads from it, such as boolean-mask indexing, nonzero() or a copy to the host. Keep such "
                f"steps out of the function.") from e
        finally:
            buffers, self._graph_buffers = self._graph_buffers, outer
        graph.buffers = buffers  # the pinned and device memory its copies use, kept with it
        return graph

    # ------------------------------------------------------- matrix products
    def matmul(self, a, b):
        """Floating products of 2-D or 3-D operands (equal or broadcast batch) go through our
        cuBLAS handle, which CUDA graphs can capture; the rest through CuPy."""
        dt = self._kdtype(a, b, sixteen_bit=True)
        simple = (dt is not None and 2 <= a.ndim <= 3 and 2 <= b.ndim <= 3 and a.size and b.size
                  and (a.ndim == 2 or b.ndim == 2 or a.shape[0] == b.shape[0] or 1 in (a.shape[0], b.shape[0]))
                  and a.shape[-1] == b.shape[-2])
        if not simple and a.dtype in LOW_PRECISION and a.dtype == b.dtype:  # CuPy's matmul has no bfloat16
            return self.cupy.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)
        if not simple:
            return self.cupy.matmul(a, b)
        with self._cp_device:
            return self._blas().matmul(self.cupy, a, b)

    def gemm(self, a, b, alpha=1.0, c=None, beta=0.0):
        dt = self._kdtype(a, b, sixteen_bit=True) if c is None else self._kdtype(a, b, c, sixteen_bit=True)
        if dt is None or a.ndim != b.ndim or a.ndim not in (2, 3) or a.shape[:-2] != b.shape[:-2] \
                or a.shape[-1] != b.shape[-2] or not a.size or not b.size \
                or (c is not None and c.shape != a.shape[:-1] + b.shape[-1:]):
            return super().gemm(a, b, alpha, c, beta)
        with self._cp_device:
            return self._blas().matmul(self.cupy, a, b, alpha, None if c is None else self._contig(c), beta)

    def _blas(self):
        """Our cuBLAS handle, made at the first product (CuPy loads the library then)."""
        if self._cublas is None:
            self._cublas = _Cublas(self.cupy)
        return self._cublas

    # ---------------------------------------------------------------- random
    def seed(self, seed):
        """Seed CuPy's generator (rand, randn, ...) and the Philox stream of dropout."""
        capture.forbid("setting a seed", "Seed before the call.")
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        with self._cp_device:
            self.rng = self.cupy.random.default_rng(seed)
            # dropout.cu's {offset, blocks done, seed}, on the device: the kernel moves the offset on
            # itself, so graphs replay fresh masks. One array for the backend's life (graphs keep
            # its address); a new seed is copied in, ordered after the work queued so far.
            if getattr(self, "_philox_state", None) is None:
                self._philox_state = self.cupy.zeros(3, dtype=np.uint64)
            self._philox_state[...] = self.asarray(np.array([0, 0, int(seed) & _MASK64], dtype=np.uint64))

    def permutation(self, n):
        if hasattr(self.rng, "permutation"):
            return self.rng.permutation(n)
        return self.cupy.argsort(self.rng.random(n))  # uniform random order

    def dropout_mask(self, shape, p, dtype):
        """Zeros with probability p, else 1/(1-p): Philox4x32-10 on (seed, offset + i/4), both read
        from the device, where the kernel moves the offset on by ceil(n/4)."""
        dtype = np.dtype(dtype)
        if dtype not in _CTYPES:
            return super().dropout_mask(shape, p, dtype)
        scale = (dtype.type if dtype in _WIDE else np.float32)(1.0 / (1.0 - p))  # the kernel's acc_t<T>
        out = self._empty(shape, dtype)
        n = out.size
        self._launch("dropout.cu", "dropout_mask", dtype, (n + 3) // 4,
                     (out, np.int64(n), self._philox_state, np.float32(p), scale))
        return out

    # --------------------------------------------------------------- helpers
    def _empty(self, shape, dtype):
        with self._cp_device:
            return self.cupy.empty(shape, dtype=dtype)

    def _zeros(self, shape, dtype):
        with self._cp_device:
            return self.cupy.zeros(shape, dtype=dtype)

    def _contig(self, a, dtype=None):
        if dtype is not None and a.dtype != dtype:
            a = a.astype(dtype)
        return self.ascontiguousarray(a).reshape(a.shape)  # ascontiguousarray makes 0-d arrays 1-d

    def ascontiguousarray(self, a):
        plan = None if a.flags.c_contiguous or a.dtype not in _CTYPES else _transposed_view(a)
        if plan is None:
            return self.cupy.ascontiguousarray(a)
        b, r, s = plan
        out = self._empty(a.shape, a.dtype)
        self._launch("layout.cu", "transpose_batched", a.dtype, 1, (a, out, np.int64(r), np.int64(s)),
                     block=(32, 8, 1), grid=((s + 31) // 32, (r + 31) // 32, b))
        return out

    def _grid(self, n, block=_BLOCK):
        return max(1, min((n + block - 1) // block, self._max_blocks))

    def _launch(self, filename, kernel, dtype, work, args, block=_BLOCK, grid=None, defines=()):
        """One launch of `kernel`<dtype>, a grid-stride loop over `work` items."""
        if work <= 0:
            return
        with self._cp_device:
            fn = self._kernels.get(filename, kernel, dtype, defines)
            if grid is None:
                grid = self._grid(work, block)
            fn(grid if isinstance(grid, tuple) else (grid,), block if isinstance(block, tuple) else (block,), args)

    @staticmethod
    def _kdtype(*arrays, sixteen_bit=False):
        """The dtype all arrays share if our kernels cover it (float32 and float64, and with
        `sixteen_bit` float16 and bfloat16 too), else None (test with `is None`: a NumPy
        dtype is falsy)."""
        dt = arrays[0].dtype
        if dt not in (_CTYPES if sixteen_bit else _WIDE) or any(a.dtype != dt for a in arrays[1:]):
            return None
        return dt

    # ----------------------------------------------------------- convolution
    def _conv_args(self, x_shape, kernel, stride, padding, dilation):
        n, c, h, w = (int(s) for s in x_shape)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        oh = conv_output_size(h, kh, sh, ph, dh)
        ow = conv_output_size(w, kw, sw, pw, dw)
        ints = [np.int32(v) for v in (n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)]
        return (n, c, h, w, kh, kw, oh, ow), ints

    def _grid_2d(self, rows, cols, block=_BLOCK):
        """(x, y) grid for kernels looping over `rows` in y and `cols` in x."""
        gy = max(1, min(rows, 65535))
        gx = max(1, min((cols + block - 1) // block, (2 * self._max_blocks + gy - 1) // gy))
        return gx, gy

    def im2col(self, x, kernel, stride, padding, dilation):
        dt = self._kdtype(x, sixteen_bit=True)
        (n, c, h, w, kh, kw, oh, ow), ints = self._conv_args(x.shape, kernel, stride, padding, dilation)
        ncols = n * max(oh, 0) * max(ow, 0)
        if dt is None or ncols >= 2 ** 30 or c * kh * kw >= 2 ** 30:
            return super().im2col(x, kernel, stride, padding, dilation)
        x = self._contig(x)
        cols = self._empty((c * kh * kw, ncols), dt)
        run = self._run(dt, ncols)  # columns per thread: 16 bytes where the rows allow
        self._launch("conv.cu", "im2col", dt, cols.size, (x, cols, *ints, np.int32(run > 1)),
                     grid=self._grid_2d(c * kh * kw, ncols // run))
        return cols

    def col2im(self, cols, x_shape, kernel, stride, padding, dilation):
        dt = self._kdtype(cols, sixteen_bit=True)
        (n, c, h, w, kh, kw, oh, ow), ints = self._conv_args(x_shape, kernel, stride, padding, dilation)
        if dt is None or n * max(oh, 0) * max(ow, 0) >= 2 ** 30 or h * w >= 2 ** 30 or n * c >= 2 ** 30:
            return super().col2im(cols, x_shape, kernel, stride, padding, dilation)
        cols = self._contig(cols)
        x = self._empty((n, c, h, w), dt)
        self._launch("conv.cu", "col2im", dt, x.size, (cols, x, *ints), grid=self._grid_2d(n * c, h * w))
        return x

    def swap_leading(self, x):
        dt = self._kdtype(x, sixteen_bit=True)
        if dt is None or x.ndim < 2 or not x.flags.c_contiguous:
            return super().swap_leading(x)
        a, b = int(x.shape[0]), int(x.shape[1])
        length = x.size // (a * b) if a * b else 0
        out = self._empty((b, a) + tuple(x.shape[2:]), dt)
        run = self._run(dt, length)
        self._launch("conv.cu", "swap_leading", dt, x.size // run,
                     (x, out, np.int64(a), np.int64(b), np.int64(length), np.int32(run > 1)))
        return out

    @staticmethod
    def _run(dtype, length):
        """Elements a thread handles along rows of `length`: a 16-byte pack when they divide it, else 1."""
        pack = 16 // dtype.itemsize
        return pack if length % pack == 0 else 1

    # --------------------------------------------------------------- pooling
    def _pool_args(self, x_shape, kernel, stride, padding):
        n, c, h, w = (int(s) for s in x_shape)
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        return (n, c, h, w, oh, ow), [np.int32(v) for v in (h, w, kh, kw, sh, sw, ph, pw, oh, ow)]

    def max_pool2d(self, x, kernel, stride, padding):
        """A channels-last x gives channels-last outputs (the nhwc kernels), any other layout
        contiguous ones."""
        dt = self._kdtype(x, sixteen_bit=True)
        if dt is None:
            return super().max_pool2d(x, kernel, stride, padding)
        (n, c, h, w, oh, ow), ints = self._pool_args(x.shape, kernel, stride, padding)
        if is_channels_last(x) and x.size < 2 ** 31:
            out = self._empty((n, oh, ow, c), dt)
            argmax = self._empty((n, oh, ow, c), np.int32)
            run = self._run(dt, c)
            self._launch("pool.cu", "max_pool2d_nhwc_forward", dt, out.size // run,
                         (x.transpose(0, 2, 3, 1), out, argmax, np.int32(c), *ints, np.int64(out.size),
                          np.int32(run > 1)))
            return out.transpose(0, 3, 1, 2), argmax.transpose(0, 3, 1, 2)
        x = self._contig(x)
        out = self._empty((n, c, oh, ow), dt)
        argmax = self._empty((n, c, oh, ow), np.int32)
        self._launch("pool.cu", "max_pool2d_forward", dt, out.size, (x, out, argmax, *ints, np.int64(out.size)))
        return out, argmax

    def max_pool2d_backward(self, grad_out, argmax, x_shape, kernel=None, stride=None, padding=None):
        """`kernel`, `stride` and `padding`, when given, let windows that do not overlap take
        their gradient by a gather instead of a scatter (channels-last only)."""
        dt = self._kdtype(grad_out, sixteen_bit=True)
        if dt is None:
            return super().max_pool2d_backward(grad_out, argmax, x_shape)
        n, c, h, w = (int(s) for s in x_shape)
        if is_channels_last(argmax) and argmax.dtype == np.int32:  # from the nhwc forward: dx channels-last
            grad_out = self._contig(grad_out.transpose(0, 2, 3, 1))
            argmax = argmax.transpose(0, 2, 3, 1)
            if kernel is not None and stride[0] >= kernel[0] and stride[1] >= kernel[1]:
                (_, _, _, _, oh, ow), ints = self._pool_args(x_shape, kernel, stride, padding)
                dx = self._empty((n, h, w, c), dt)
                run = self._run(dt, c)
                self._launch("pool.cu", "max_pool2d_nhwc_backward_disjoint", dt, dx.size // run,
                             (grad_out, argmax, dx, np.int32(c), *ints, np.int64(dx.size), np.int32(run > 1)))
                return dx.transpose(0, 3, 1, 2)
            dx = self._zeros((n, h, w, c), dt)
            self._launch("pool.cu", "max_pool2d_nhwc_backward", dt, grad_out.size,
                         (grad_out, argmax, dx, np.int32(c), np.int64(grad_out.size // (n * c)),
                          np.int64(h * w), np.int64(grad_out.size)))
            return dx.transpose(0, 3, 1, 2)
        grad_out = self._contig(grad_out)
        argmax = self._contig(argmax, np.int32)
        dx = self._zeros((n, c, h, w), dt)
        plane = grad_out.size // (n * c) if n * c else 0
        self._launch("pool.cu", "max_pool2d_backward", dt, grad_out.size,
                     (grad_out, argmax, dx, np.int64(plane), np.int64(h * w), np.int64(grad_out.size)))
        return dx

    def avg_pool2d(self, x, kernel, stride, padding, count_include_pad=True):
        dt = self._kdtype(x, sixteen_bit=True)
        if dt is None:
            return super().avg_pool2d(x, kernel, stride, padding, count_include_pad)
        (n, c, h, w, oh, ow), ints = self._pool_args(x.shape, kernel, stride, padding)
        x = self._contig(x)
        out = self._empty((n, c, oh, ow), dt)
        self._launch("pool.cu", "avg_pool2d_forward", dt, out.size,
                     (x, out, *ints, np.int32(bool(count_include_pad)), np.int64(out.size)))
        return out

    def avg_pool2d_backward(self, grad_out, x_shape, kernel, stride, padding, count_include_pad=True):
        dt = self._kdtype(grad_out, sixteen_bit=True)
        if dt is None:
            return super().avg_pool2d_backward(grad_out, x_shape, kernel, stride, padding, count_include_pad)
        (n, c, h, w, oh, ow), ints = self._pool_args(x_shape, kernel, stride, padding)
        grad_out = self._contig(grad_out)
        dx = self._empty((n, c, h, w), dt)
        self._launch("pool.cu", "avg_pool2d_backward", dt, dx.size,
                     (grad_out, dx, *ints, np.int32(bool(count_include_pad)), np.int64(dx.size)))
        return dx

    # ----------------------------------------------------------- arithmetic
    def add(self, a, b):
        """a + b, channels-last kept (`keep_layout` hands two channels-last arrays over as C-ordered ones)."""
        return keep_layout(self._add_dense, a, b)

    def _add_dense(self, a, b):
        """add_packed for two C-ordered arrays of one dtype and shape, 16-byte aligned; CuPy's add otherwise."""
        cupy = self.cupy
        if not (isinstance(a, cupy.ndarray) and isinstance(b, cupy.ndarray) and a.shape == b.shape
                and a.flags.c_contiguous and b.flags.c_contiguous and a.data.ptr % 16 == 0 == b.data.ptr % 16
                and self._kdtype(a, b, sixteen_bit=True) is not None):
            return cupy.add(a, b)
        out = self._empty(a.shape, a.dtype)
        self._launch("arithmetic.cu", "add_packed", a.dtype, -(-a.size // (16 // a.itemsize)),
                     (a, b, out, np.int64(a.size)))
        return out

    # ----------------------------------------------------------- activations
    # Elementwise kernels run over the stored order: a channels-last input gives a channels-last
    # output (the other operand of a binary kernel is brought to the first one's layout).
    def _unary(self, kernel, x, *scalars):
        cl = is_channels_last(x)
        x = self._contig(x.transpose(0, 2, 3, 1) if cl else x)
        y = self._empty(x.shape, x.dtype)
        self._launch("activation.cu", kernel, x.dtype, x.size, (x, y, *scalars, np.int64(x.size)))
        return y.transpose(0, 3, 1, 2) if cl else y

    def _binary(self, kernel, grad, other, *scalars):
        cl = is_channels_last(grad) or is_channels_last(other)
        if cl:
            grad, other = grad.transpose(0, 2, 3, 1), other.transpose(0, 2, 3, 1)
        grad, other = self._contig(grad), self._contig(other)
        dx = self._empty(grad.shape, grad.dtype)
        self._launch("activation.cu", kernel, grad.dtype, grad.size, (grad, other, dx, *scalars, np.int64(grad.size)))
        return dx.transpose(0, 3, 1, 2) if cl else dx

    def _same(self, grad, other):
        return grad.shape == other.shape and self._kdtype(grad, other) is not None

    def relu(self, x):
        return super().relu(x) if self._kdtype(x, sixteen_bit=True) is None else self._unary("relu_forward", x)

    def relu_backward(self, grad, y):
        if grad.shape != y.shape or self._kdtype(grad, y, sixteen_bit=True) is None:
            return super().relu_backward(grad, y)
        return self._binary("relu_backward", grad, y)

    def leaky_relu(self, x, slope):
        if self._kdtype(x) is None:
            return super().leaky_relu(x, slope)
        return self._unary("leaky_relu_forward", x, x.dtype.type(slope))

    def leaky_relu_backward(self, grad, x, slope):
        if not self._same(grad, x):
            return super().leaky_relu_backward(grad, x, slope)
        return self._binary("leaky_relu_backward", grad, x, grad.dtype.type(slope))

    def sigmoid(self, x):
        return super().sigmoid(x) if self._kdtype(x) is None else self._unary("sigmoid_forward", x)

    def sigmoid_backward(self, grad, y):
        if not self._same(grad, y):
            return super().sigmoid_backward(grad, y)
        return self._binary("sigmoid_backward", grad, y)

    def tanh(self, x):
        return super().tanh(x) if self._kdtype(x) is None else self._unary("tanh_forward", x)

    def tanh_backward(self, grad, y):
        return self._binary("tanh_backward", grad, y) if self._same(grad, y) else super().tanh_backward(grad, y)

    def gelu(self, x, approximate="none"):
        if self._kdtype(x, sixteen_bit=True) is None:
            return super().gelu(x, approximate)
        return self._unary("gelu_forward", x, np.int32(approximate == "tanh"))

    def gelu_backward(self, grad, x, approximate="none"):
        if grad.shape != x.shape or self._kdtype(grad, x, sixteen_bit=True) is None:
            return super().gelu_backward(grad, x, approximate)
        return self._binary("gelu_backward", grad, x, np.int32(approximate == "tanh"))

    # ------------------------------------------------- softmax cross-entropy
    def softmax_cross_entropy(self, logits, target, label_smoothing=0.0, ignore_index=-100):
        dt = self._kdtype(logits)
        if dt is None or logits.ndim != 2:
            return super().softmax_cross_entropy(logits, target, label_smoothing, ignore_index)
        n, c = (int(s) for s in logits.shape)
        logits = self._contig(logits)
        target = self._contig(target, np.int64)
        loss = self._empty((n,), dt)
        probs = self._empty((n, c), dt)
        if c <= 1024:  # a warp per row, 8 rows per block
            block, rows = (32, 8, 1), 8
        else:          # a block of 512 threads per row
            block, rows = (512, 1, 1), 1
        grid = max(1, min((n + rows - 1) // rows, self._max_blocks))
        self._launch("softmax_ce.cu", "softmax_xent_forward", dt, n,
                     (logits, target, loss, probs, np.int64(n), np.int32(c), dt.type(label_smoothing),
                      np.int64(ignore_index)), block=block, grid=grid)
        return loss, probs

    def reduce_class_loss(self, loss, target, ignore_index, mean):
        dt = self._kdtype(loss)
        if dt is None or loss.ndim != 1 or target.shape != loss.shape:
            return super().reduce_class_loss(loss, target, ignore_index, mean)
        out, count = self._empty((), dt), self._empty((), dt)
        self._launch("softmax_ce.cu", "xent_reduce", dt, 1,
                     (self._contig(loss), self._contig(target, np.int64), np.int64(loss.size), np.int64(ignore_index),
                      np.int32(mean), out, count), grid=1)
        return out, count

    def softmax_cross_entropy_backward(self, grad_loss, probs, target, label_smoothing=0.0, ignore_index=-100,
                                       count=None):
        dt = self._kdtype(probs)
        if dt is None or probs.ndim != 2 or (count is not None and count.dtype != dt):
            return super().softmax_cross_entropy_backward(grad_loss, probs, target, label_smoothing, ignore_index,
                                                          count)
        n, c = (int(s) for s in probs.shape)
        probs = self._contig(probs)
        target = self._contig(target, np.int64)
        if grad_loss.dtype != dt:
            grad_loss = grad_loss.astype(dt)
        grad_loss = self.cupy.broadcast_to(grad_loss, (n,))  # a scalar gradient stays a stride-0 view
        stride = grad_loss.strides[0] // grad_loss.itemsize
        dx = self._empty((n, c), dt)
        self._launch("softmax_ce.cu", "softmax_xent_backward", dt, dx.size,
                     (grad_loss, np.int64(stride), np.uint64(0) if count is None else count, probs, target, dx,
                      np.int32(c), dt.type(label_smoothing), np.int64(ignore_index), np.int64(dx.size)))
        return dx

    # ---------------------------------------------------------- augmentation
    def augment_images(self, images, index, scale, shift, dtype, translate=None, flip=None, reflect=False,
                       cutout=None, cutout_size=0):
        """The whole batch in one launch of `augment_images` (kernels/augment.cu)."""
        dtype = np.dtype(dtype)
        if dtype not in _CTYPES or images.dtype != np.uint8 or images.ndim != 4:
            return super().augment_images(images, index, scale, shift, dtype, translate, flip, reflect, cutout,
                                          cutout_size)
        _, c, h, w = (int(s) for s in images.shape)
        out = self._empty((int(index.shape[0]), c, h, w), dtype)
        optional = [np.uint64(0) if a is None else self._contig(a, t)
                    for a, t in ((translate, np.int32), (flip, np.uint8), (cutout, np.int32))]
        self._launch("augment.cu", "augment_images", dtype, out.size,
                     (self._contig(images), self._contig(index, np.int64), *optional, self._contig(scale, np.float32),
                      self._contig(shift, np.float32), out, np.int32(c), np.int32(h), np.int32(w),
                      np.int32(bool(reflect)), np.int32(cutout_size), np.int64(out.size)))
        return out

    # ------------------------------------------------------------ batch norm
    def _bn_shares(self, c, units):
        """Blocks per channel: enough for about eight blocks per multiprocessor in all, no more than
        the channel has 256-thread rows of work."""
        return max(1, min(-(-self._max_blocks // (4 * c)), -(-units // _BLOCK)))

    def _bn_layout(self, x):
        """(N, C, L, elements per 16-byte load or 1, blocks per channel, rows) of an (N, C, L) array.
        `rows`: x is a channels-last input as (N*H*W, C, 1) with C a multiple of the 16-byte pack,
        whose sums run on the `rows` kernels, every block over all channels of a share of the rows."""
        n, c, l = (int(s) for s in x.shape)
        pack = 16 // x.dtype.itemsize
        if l == 1 and c % pack == 0 and c // pack <= _BLOCK:
            # two blocks per multiprocessor (each thread adds up at least 8 rows): more would only
            # lengthen the finishing kernel's serial sum over the shares
            rows_per_block = _BLOCK // (c // pack) * 8
            return n, c, l, pack, max(1, min(self._max_blocks // 16, -(-n // rows_per_block))), True
        run = self._run(x.dtype, l)
        return n, c, l, run, self._bn_shares(c, n * l // run), False

    def _rows_grid(self, n, c, pack):
        """Blocks for an elementwise `rows` kernel over n rows of c channels: enough to fill the GPU."""
        return max(1, min(self._max_blocks, -(-n // (_BLOCK // (c // pack)))))

    def batch_norm_train(self, x, weight, bias, eps, activation=None, running=None):
        dt = self._kdtype(x, sixteen_bit=True)
        if dt is None or x.ndim != 3 or not x.size or weight.dtype != (np.float32 if dt in LOW_PRECISION else dt):
            return super().batch_norm_train(x, weight, bias, eps, activation, running)
        x = self._contig(x)
        n, c, l, run, shares, rows = self._bn_layout(x)
        p = weight.dtype
        weight, bias = self._bn_params(p, weight, bias)
        partial = self._empty((c, shares, 2), p)
        mean, invstd, scale, shift = (self._empty((c,), p) for _ in range(4))
        y = self._empty(x.shape, dt)
        # the running statistics are updated by bn_forward_finish when the kernel can write them in place
        fused = running is not None and all(r.dtype == p and r.flags.c_contiguous for r in running[:2])
        running_mean, running_var = running[:2] if fused else (np.uint64(0), np.uint64(0))
        if rows:
            self._launch("batch_norm.cu", "bn_partial_sums_rows", dt, 1, (x, partial, np.int64(n), np.int32(c)),
                         grid=shares)
        else:
            self._launch("batch_norm.cu", "bn_partial_sums", dt, 1,
                         (x, partial, np.int32(n), np.int32(c), np.int64(l), np.int32(run > 1)), grid=(shares, c))
        self._launch("batch_norm.cu", "bn_forward_finish", dt, 32 * c,
                     (x, partial, np.int32(shares), np.int32(c), np.int64(l), np.int64(n * l), weight, bias,
                      p.type(eps), mean, invstd, scale, shift, running_mean, running_var,
                      p.type(running[2] if fused else 0)))
        if running is not None and not fused:
            self.update_running_stats(running, mean, 1 / (invstd * invstd) - p.type(eps), n * l)
        self._bn_scale_shift(x, scale, shift, y, activation)
        return y, mean, invstd

    def batch_norm_apply(self, x, scale, shift, activation=None):
        dt = self._kdtype(x, sixteen_bit=True)
        if dt is None or x.ndim != 3 or not x.size or scale.dtype != (np.float32 if dt in LOW_PRECISION else dt):
            return super().batch_norm_apply(x, scale, shift, activation)
        x = self._contig(x)
        scale, shift = self._bn_params(scale.dtype, scale, shift)
        y = self._empty(x.shape, dt)
        self._bn_scale_shift(x, scale, shift, y, activation)
        return y

    def _bn_scale_shift(self, x, scale, shift, y, activation):
        """y = activation(x * scale[c] + shift[c]) in one pass over x (N, C, L)."""
        n, c, l, run, _, rows = self._bn_layout(x)
        act = np.int32(_BN_ACTIVATION_CODES[activation])
        if rows:
            self._launch("batch_norm.cu", "bn_scale_shift_rows", y.dtype, 1,
                         (x, scale, shift, y, np.int64(n), np.int32(c), act), grid=self._rows_grid(n, c, run))
        else:
            self._launch("batch_norm.cu", "bn_scale_shift", y.dtype, x.size // run,
                         (x, scale, shift, y, np.int32(c), np.int64(l), np.int64(x.size), np.int32(run > 1), act))

    def batch_norm_backward(self, grad, x, weight, bias, mean, invstd, activation=None):
        dt = self._kdtype(x, sixteen_bit=True)
        if dt is None or x.ndim != 3 or grad.shape != x.shape or not x.size or mean.dtype != weight.dtype \
                or weight.dtype != (np.float32 if dt in LOW_PRECISION else dt):
            return super().batch_norm_backward(grad, x, weight, bias, mean, invstd, activation)
        grad, x = self._contig(grad, dt), self._contig(x)
        n, c, l, run, shares, rows = self._bn_layout(x)
        p = weight.dtype
        weight, bias, mean, invstd = self._bn_params(p, weight, bias, mean, invstd)
        act = np.int32(_BN_ACTIVATION_CODES[activation])
        partial = self._empty((c, shares, 2), p)
        dweight, dbias, coef = self._empty((c,), p), self._empty((c,), p), self._empty((c, 3), p)
        dx = self._empty(x.shape, dt)
        # GELU's slope (an erf and an exp) is evaluated once: the first pass keeps the gradient taken
        # through it for the second; a ReLU's is a comparison, cheaper to redo than to store
        kept = self._empty(x.shape, dt) if activation in ("gelu", "gelu_tanh") else None
        kept_ptr = np.uint64(0) if kept is None else kept
        if rows:
            self._launch("batch_norm.cu", "bn_backward_partial_sums_rows", dt, 1,
                         (grad, x, act, weight, bias, mean, invstd, kept_ptr, partial, np.int64(n), np.int32(c)),
                         grid=shares)
        else:
            self._launch("batch_norm.cu", "bn_backward_partial_sums", dt, 1,
                         (grad, x, act, weight, bias, mean, invstd, kept_ptr, partial, np.int32(n), np.int32(c),
                          np.int64(l), np.int32(run > 1)), grid=(shares, c))
        if kept is not None:
            grad, act = kept, np.int32(0)
        self._launch("batch_norm.cu", "bn_backward_finish", dt, 32 * c,
                     (partial, np.int32(shares), np.int32(c), np.int64(n * l), weight, invstd, dweight, dbias, coef))
        if rows:
            self._launch("batch_norm.cu", "bn_backward_dx_rows", dt, 1,
                         (grad, x, act, weight, bias, mean, invstd, coef, dx, np.int64(n), np.int32(c)),
                         grid=self._rows_grid(n, c, run))
        else:
            self._launch("batch_norm.cu", "bn_backward_dx", dt, x.size // run,
                         (grad, x, act, weight, bias, mean, invstd, coef, dx, np.int32(c), np.int64(l),
                          np.int64(x.size), np.int32(run > 1)))
        return dx, dweight, dbias

    def _bn_params(self, dt, *arrays):
        """Per-channel vectors as contiguous dt arrays (None becomes a null pointer)."""
        return [np.uint64(0) if a is None else self._contig(a, dt) for a in arrays]

    # ------------------------------------------------------ optimizer updates
    def _table(self, dt, fields, extra=()):
        """The device table of `fields` (lists of arrays or None, one entry per tensor), the
        integers of `extra` (tuples of one int64 per tensor) and the prefix sums of the sizes. It
        is uploaded once per distinct set of pointers, without a host sync (`_upload`), and kept in
        a small LRU cache, so a training loop whose buffers stay put uploads nothing after its
        first step."""
        sizes = [a.size for a in fields[0]]
        ptrs = tuple(tuple(0 if a is None else a.data.ptr for a in f) for f in fields)
        key = (dt.str, ptrs, tuple(sizes), extra)
        table = self._tables.get(key)
        if table is None:
            starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
            table = self._upload(np.concatenate([np.array(p, dtype=np.uint64).view(np.int64) for p in ptrs]
                                                + [np.array(e, dtype=np.int64) for e in extra] + [starts]))
            self._tables[key] = table
            if len(self._tables) > 64:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(key)
        return table, int(sum(sizes))

    def _laid_out_as(self, grad, param):
        """`grad` in the dtype and memory order of `param`, so the flat update kernels pair their
        elements one by one (a channels-last parameter has a channels-last gradient)."""
        if is_channels_last(param):
            return self._contig(grad.transpose(0, 2, 3, 1), param.dtype).transpose(0, 3, 1, 2)
        return self._contig(grad, param.dtype)

    def _split_by_dtype(self, params, *others):
        """Group tensor indices by kernel dtype; return (groups, leftovers for the generic code)."""
        groups, rest = {}, []
        for i, p in enumerate(params):
            dt = p.dtype
            if dt in _WIDE and (p.flags.c_contiguous or is_channels_last(p)) and p.size and \
                    all(o[i] is None or (o[i].strides == p.strides and o[i].dtype == dt) for o in others):
                groups.setdefault(dt, []).append(i)
            elif p.size:
                rest.append(i)
        return groups, rest

    def write_scalars(self, values, out=None):
        """Through a launch of `set_scalars` whose arguments carry the values: no host copy to
        keep alive, nothing to wait for, and the write is ordered before the update on the stream."""
        if out is None:
            out = self._zeros((len(values),), np.float64)
        padded = [np.float64(v) for v in values] + [np.float64(0)] * (8 - len(values))
        self._launch("optim.cu", "set_scalars", out.dtype, 1, (out, np.int32(len(values)), *padded), block=8, grid=1)
        return out

    def muon_update(self, params, grads, bufs, scalars, lr_ratios, nesterov, ns_coefficients, ns_steps, eps,
                    normalize=False, skip=None):
        """Per dtype, one launch for every momentum (each direction rounded to bfloat16 into one
        stack, a wide matrix per parameter), one to scale them, the Newton-Schulz GEMMs batched over
        the matrices of one shape, and one launch for the updates (`optim.cu`)."""
        grads = [self._laid_out_as(g, p) for p, g in zip(params, grads)]
        groups, rest = self._split_by_dtype(params, bufs)
        if rest:
            super().muon_update(*([v[i] for i in rest] for v in (params, grads, bufs)), scalars,
                                [lr_ratios[i] for i in rest], nesterov, ns_coefficients, ns_steps, eps, normalize, skip)
        for dt, idx in groups.items():
            idx = sorted(idx, key=lambda i: _wide_shape(params[i]))  # a shape's matrices side by side
            ps, gs, bs = ([v[i] for i in idx] for v in (params, grads, bufs))
            ratios = tuple(np.array([lr_ratios[i] for i in idx], np.float64).view(np.int64).tolist())
            table, total = self._table(dt, [ps, gs, bs], extra=(tuple(int(p.shape[0]) for p in ps), ratios))
            nt, flag = np.int32(len(ps)), self._skip_flag(skip)
            grid = (max(1, min(-(-max(p.size for p in ps) // _BLOCK), self._max_blocks // len(ps))), len(ps))
            x = self._empty((total,), LOW_PRECISION[1])
            xsum, psum = self._zeros((len(ps),), np.float32), self._zeros((len(ps),), dt)
            self._launch("optim.cu", "muon_momentum", dt, 1, (table, nt, scalars, np.int32(nesterov),
                                                              np.int32(normalize), x, xsum, psum, flag), grid=grid)
            self._launch("optim.cu", "muon_scale", dt, 1, (table, nt, x, xsum, np.float32(eps), flag), grid=grid)
            start = 0
            for shape, same in itertools.groupby(ps, key=_wide_shape):
                stack = x[start:start + len(list(same)) * shape[0] * shape[1]].reshape(-1, *shape)
                stack[...] = self.newton_schulz_steps(stack, ns_coefficients, ns_steps)
                start += stack.size
            self._launch("optim.cu", "muon_apply", dt, 1, (table, nt, scalars, x, psum, np.int32(normalize), flag),
                         grid=grid)

    def _skip_flag(self, skip):
        """The kernels' pointer to the float32 skip flag (0: no flag)."""
        return np.uint64(0) if skip is None else self._contig(skip, np.float32)

    def sgd_update(self, params, grads, bufs, scalars, has_weight_decay, nesterov, first_step, skip=None):
        """One SGD step over every parameter: one launch per dtype (the generic math, PyTorch's)."""
        grads = [self._laid_out_as(g, p) for p, g in zip(params, grads)]
        groups, rest = self._split_by_dtype(params, bufs)
        if rest:
            super().sgd_update([params[i] for i in rest], [grads[i] for i in rest], [bufs[i] for i in rest],
                               scalars, has_weight_decay, nesterov, first_step, skip)
        for dt, idx in groups.items():
            table, total = self._table(dt, [[params[i] for i in idx], [grads[i] for i in idx],
                                            [bufs[i] for i in idx]])
            self._launch("optim.cu", "sgd_multi_tensor", dt, total,
                         (table, np.int32(len(idx)), np.int64(total), scalars, np.int32(has_weight_decay),
                          np.int32(bufs[idx[0]] is not None), np.int32(nesterov), np.int32(first_step),
                          self._skip_flag(skip)))

    def adam_update(self, params, grads, exp_avgs, exp_avg_sqs, scalars, has_weight_decay, decoupled, skip=None):
        """One Adam/AdamW step over every parameter: one launch per dtype."""
        grads = [self._laid_out_as(g, p) for p, g in zip(params, grads)]
        groups, rest = self._split_by_dtype(params, exp_avgs, exp_avg_sqs)
        if rest:
            super().adam_update([params[i] for i in rest], [grads[i] for i in rest], [exp_avgs[i] for i in rest],
                                [exp_avg_sqs[i] for i in rest], scalars, has_weight_decay, decoupled, skip)
        mode = 0 if not has_weight_decay else (2 if decoupled else 1)
        for dt, idx in groups.items():
            table, total = self._table(dt, [[params[i] for i in idx], [grads[i] for i in idx],
                                            [exp_avgs[i] for i in idx], [exp_avg_sqs[i] for i in idx]])
            self._launch("optim.cu", "adam_multi_tensor", dt, total,
                         (table, np.int32(len(idx)), np.int64(total), scalars, np.int32(mode),
                          self._skip_flag(skip)))
