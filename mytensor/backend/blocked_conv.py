"""conv2d by im2col a few samples at a time, for the CPU.

The columns of a whole batch are kh*kw times its input, far larger than the cache, so
writing and reading them back runs at memory speed. A block of samples whose columns fit
`COLUMNS_BYTES` is copied and multiplied while the columns are still in cache, and the
product of one sample, W (O, K) @ columns (K, L), is already the (O, L) slice of the
output: no transpose of the result either.

Kernels of `WIDE_TAPS` or more at stride 1 (LeNet-5's 5x5) take wide rows: each sample's
input is copied once into a zero-bordered plane (Hp x Wp, plus kw-1 trailing zeros), and
the column of kernel offset (i, j) is that flat plane from i*Wp + j on, OH*Wp floats long.
An output row then holds Wp values of which the first OW are the convolution (the rest
read across the row's end and are dropped), so the columns of a whole block are one copy
of contiguous runs of OH*Wp floats, where per-offset windows copy runs of OW: 2x to 4x the
copying speed for the short rows of small images, for (Wp / OW - 1) more arithmetic, which
3x3 kernels (9 offsets) do not earn back. Other convolutions copy each kernel offset's
window (`_Windows`), the input never padded; with 'same' padding at stride 1 a window is
the input shifted by a constant, copied (and added back by col2im) as one flat run.

Shapes of a block of b samples (g = groups, K = C/g * kh * kw, L = OH * Wp wide, OH * OW
else):
    columns  (b, g, K, L)      weight (g, O/g, K)
    y        (b, g, O/g, L) = weight @ columns
    dW       (g, O/g, K)    = sum over the block of (columns @ dY^T)^T
    dX       col2im of weight^T @ dY (b, g, K, L): kh*kw adds
"""
import functools
import threading

import numpy as np

from .array_backend import conv_output_size

COLUMNS_BYTES = 2 << 20  # about the L2 + a share of L3 of one core
SCRATCH_BYTES = 8 * COLUMNS_BYTES  # the largest buffer kept between calls
WIDE_TAPS = 16  # the kernels with enough offsets for wide rows to pay (measured: 5x5 yes, 3x3 no)
WIDE_EXTRA = 1.5  # the wide rows' arithmetic (Wp / OW) that their faster copies still pay for


class _Scratch(threading.local):
    """Buffers reused from call to call: a fresh array of columns per block costs page
    faults that took as long as filling it."""

    def __init__(self):
        self.buffers = {}

    def get(self, role, shape, dtype):
        size = int(np.prod(shape))
        if size * np.dtype(dtype).itemsize > SCRATCH_BYTES:  # one sample's columns of a large image: not kept
            return np.empty(shape, dtype=dtype)
        key = (role, np.dtype(dtype).str)
        buf = self.buffers.get(key)
        if buf is None or buf.size < size:
            buf = self.buffers[key] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)


_scratch = _Scratch()


def _blocks(n, per_block):
    """(start, stop) of the fewest blocks of at most `per_block` samples, their sizes within one."""
    count = -(-n // max(1, per_block))
    base, extra = divmod(n, count)
    stops = [base * k + min(k, extra) for k in range(count + 1)]
    return list(zip(stops[:-1], stops[1:]))


def _span(size, out_size, offset, stride, padding):
    """(output slice, input slice) of the outputs whose tap at `offset` (already times the
    dilation) falls inside an input of `size`: output o reads input o * stride + offset - padding."""
    lo = max(0, -(-(padding - offset) // stride))
    hi = min(out_size, (size - 1 + padding - offset) // stride + 1)
    if hi <= lo:
        return None
    first = lo * stride + offset - padding
    return slice(lo, hi), slice(first, first + stride * (hi - lo - 1) + 1, stride)


def _offsets(x_shape, kernel, out_shape, stride, padding, dilation):
    """For each kernel offset (i, j) that reads the input, (i, j, column slices, input slices)."""
    spans = [[_span(x_shape[d + 2], out_shape[d], k * dilation[d], stride[d], padding[d]) for k in range(kernel[d])]
             for d in (0, 1)]
    for i, rows in enumerate(spans[0]):
        for j, cols in enumerate(spans[1]):
            if rows and cols:
                yield i, j, (rows[0], cols[0]), (rows[1], cols[1])


class _Windows:
    """The geometry of a convolution's per-offset windows: output size, blocks, and for each
    kernel offset (i, j) that reads the input, (i, j, column slices, input slices).

    At stride 1 with OW = W (the 'same' padding) a window's rows sit as far apart in the
    columns as in the input: the window is one flat run shifted by a constant (`runs`: i, j,
    shift = input index - column index, first and last column index), copied or added back
    whole, and the entries that wrap across a row's end (`wrapped`: j, column slice) are
    zeroed, for all i at once."""

    def __init__(self, x_shape, w_shape, itemsize, stride, padding, dilation):
        n, c, h, w = x_shape
        _, _, kh, kw = w_shape
        self.oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
        self.ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
        self.shape = (c, kh, kw, self.oh, self.ow)
        self.blocks = _blocks(n, COLUMNS_BYTES // (c * kh * kw * self.oh * self.ow * itemsize))
        self.offsets = list(_offsets(x_shape, (kh, kw), (self.oh, self.ow), stride, padding, dilation))
        self.runs = self.wrapped = None
        if stride == (1, 1) and self.ow == w:
            self.runs, wrapped = [], {}
            for i, j, dst, src in self.offsets:
                shift = (src[0].start - dst[0].start) * w + src[1].start - dst[1].start
                self.runs.append((i, j, shift, max(dst[0].start * w, -shift), min(dst[0].stop * w, h * w - shift)))
                wrapped[j] = [sl for sl in (slice(0, dst[1].start), slice(dst[1].stop, w)) if sl.stop > sl.start]
            self.wrapped = [(j, sl) for j, slices in wrapped.items() for sl in slices]

    def columns(self, x, cols):
        """The columns (b, C, kh, kw, OH, OW) of the samples x (b, C, H, W) into `cols`, whose
        padding entries are zero already."""
        if self.runs is None:
            for i, j, dst, src in self.offsets:
                cols[:, :, i, j, dst[0], dst[1]] = x[:, :, src[0], src[1]]
            return cols
        b, c = x.shape[:2]
        flat_x, flat_cols = x.reshape(b, c, -1), cols.reshape(cols.shape[:4] + (-1,))
        for i, j, shift, first, last in self.runs:
            flat_cols[:, :, i, j, first:last] = flat_x[:, :, first + shift: last + shift]
        for j, sl in self.wrapped:
            cols[:, :, :, j, :, sl] = 0
        return cols

    def add_back(self, dcols, dx):
        """col2im: every entry of dcols (b, C, kh, kw, OH, OW) added to the entry of dx (b, C, H, W)
        its column read (dcols' wrapped entries are zeroed on the way)."""
        if self.runs is None:
            for i, j, dst, src in self.offsets:
                dx[:, :, src[0], src[1]] += dcols[:, :, i, j, dst[0], dst[1]]
            return dx
        for j, sl in self.wrapped:
            dcols[:, :, :, j, :, sl] = 0
        b, c = dx.shape[:2]
        flat_dx, flat_dcols = dx.reshape(b, c, -1), dcols.reshape(dcols.shape[:4] + (-1,))
        for i, j, shift, first, last in self.runs:
            flat_dx[:, :, first + shift: last + shift] += flat_dcols[:, :, i, j, first:last]
        return dx

    def zeroed_columns(self, dtype):
        """The reused columns buffer of a block, zeroed: the windows leave the padding's entries as they are."""
        cols = _scratch.get("columns", (self.blocks[0][1],) + self.shape, dtype)
        cols.fill(0)
        return cols


@functools.lru_cache(maxsize=256)
def _windows(x_shape, w_shape, itemsize, stride, padding, dilation):
    return _Windows(x_shape, w_shape, itemsize, stride, padding, dilation)


class _Wide:
    """The geometry of a stride-1 convolution in wide rows."""

    def __init__(self, x_shape, w_shape, padding, dilation, itemsize):
        n, self.c, self.h, self.w = x_shape
        _, _, self.kh, self.kw = w_shape
        self.padding, self.dilation = padding, dilation
        self.hp, self.wp = self.h + 2 * padding[0], self.w + 2 * padding[1]
        self.oh = self.hp - dilation[0] * (self.kh - 1)
        self.ow = self.wp - dilation[1] * (self.kw - 1)
        self.length = self.oh * self.wp
        self.plane = self.hp * self.wp + dilation[1] * (self.kw - 1)
        self.blocks = _blocks(n, COLUMNS_BYTES // (self.c * self.kh * self.kw * self.length * itemsize))

    def interior(self, planes):
        """The (b, C, H, W) view of the input inside padded planes (b, C, plane)."""
        (ph, pw), b = self.padding, planes.shape[0]
        grid = planes[:, :, :self.hp * self.wp].reshape(b, self.c, self.hp, self.wp)
        return grid[:, :, ph: ph + self.h, pw: pw + self.w]

    def padded(self, x):
        """Samples x (b, C, H, W) in zero-bordered planes (b, C, plane); only the border is zeroed."""
        (ph, pw), b = self.padding, x.shape[0]
        planes = _scratch.get("planes", (b, self.c, self.plane), x.dtype)
        grid = planes[:, :, :self.hp * self.wp].reshape(b, self.c, self.hp, self.wp)
        grid[:, :, :ph] = 0
        grid[:, :, ph + self.h:] = 0
        if pw:
            grid[:, :, ph: ph + self.h, :pw] = 0
            grid[:, :, ph: ph + self.h, pw + self.w:] = 0
        planes[:, :, self.hp * self.wp:] = 0
        self.interior(planes)[...] = x
        return planes

    def columns(self, planes):
        """(b, C * kh * kw, OH * Wp): one copy of a strided view of the planes."""
        b, s = planes.shape[0], planes.itemsize
        view = np.lib.stride_tricks.as_strided(
            planes, (b, self.c, self.kh, self.kw, self.length),
            (self.c * self.plane * s, self.plane * s, self.dilation[0] * self.wp * s, self.dilation[1] * s, s))
        cols = _scratch.get("columns", view.shape, planes.dtype)
        np.copyto(cols, view)
        return cols.reshape(b, -1, self.length)

    def widened(self, grad):
        """dY (b, O, OH, OW) in wide rows (b, O, OH * Wp), zeros in the dropped columns."""
        b, o = grad.shape[:2]
        wide = _scratch.get("widened", (b, o, self.oh, self.wp), grad.dtype)
        wide[..., self.ow:] = 0
        wide[..., :self.ow] = grad
        return wide.reshape(b, o, self.length)


@functools.lru_cache(maxsize=256)
def _wide(x_shape, w_shape, itemsize, stride, padding, dilation):
    """The wide-row geometry of this convolution, or None where windows serve better."""
    if stride != (1, 1) or w_shape[2] * w_shape[3] < WIDE_TAPS:
        return None
    wide = _Wide(x_shape, w_shape, padding, dilation, itemsize)
    return wide if wide.ow > 0 and wide.oh > 0 and wide.wp <= WIDE_EXTRA * wide.ow else None


class BlockedConv:
    """conv2d and its gradients, mixed into a backend whose array module is NumPy."""
    conv_in_blocks = True

    def _matmul_into(self, a, b, out):
        """out = a @ b, in place where NumPy multiplies in the output's type."""
        if out.dtype in (np.float32, np.float64):
            return self.xp.matmul(a, b, out=out)
        out[...] = self.matmul(a, b)
        return out

    def conv2d(self, x, weight, stride, padding, dilation, groups):
        """y (N, O, OH, OW), C-contiguous, without bias."""
        xp = self.xp
        n, c, _, _ = x.shape
        o, cg, kh, kw = weight.shape
        wmat = weight.reshape(groups, o // groups, cg * kh * kw)
        wide = _wide(x.shape, weight.shape, x.dtype.itemsize, stride, padding, dilation)
        if wide is not None:
            out = xp.empty((n, o, wide.oh, wide.ow), dtype=x.dtype)
            for start, stop in wide.blocks:
                cols = wide.columns(wide.padded(x[start:stop])).reshape(stop - start, groups, -1, wide.length)
                y = _scratch.get("product", (stop - start, groups, o // groups, wide.length), x.dtype)
                self._matmul_into(wmat, cols, y)
                out[start:stop] = y.reshape(stop - start, o, wide.oh, wide.wp)[..., :wide.ow]
            return out
        win = _windows(x.shape, weight.shape, x.dtype.itemsize, stride, padding, dilation)
        cols = win.zeroed_columns(x.dtype)
        out = xp.empty((n, groups, o // groups, win.oh * win.ow), dtype=x.dtype)
        for start, stop in win.blocks:
            block = win.columns(x[start:stop], cols[:stop - start])
            self._matmul_into(wmat, block.reshape(-1, groups, cg * kh * kw, win.oh * win.ow), out[start:stop])
        return out.reshape(n, o, win.oh, win.ow)

    def conv2d_weight_grad(self, x, grad, w_shape, stride, padding, dilation, groups):
        """dW (O, C/g, kh, kw) from the input x and dY (N, O, OH, OW)."""
        xp = self.xp
        n, c, _, _ = x.shape
        o, cg, kh, kw = w_shape
        k = cg * kh * kw
        gw_t = xp.zeros((groups, k, o // groups), dtype=x.dtype)  # columns @ dY^T: OpenBLAS's faster form
        wide = _wide(x.shape, w_shape, x.dtype.itemsize, stride, padding, dilation)
        if wide is not None:
            for start, stop in wide.blocks:
                cols = wide.columns(wide.padded(x[start:stop])).reshape(stop - start, groups, k, wide.length)
                g = wide.widened(grad[start:stop]).reshape(stop - start, groups, o // groups, wide.length)
                gw_t += self.matmul(cols, g.swapaxes(2, 3)).sum(axis=0)
            return xp.ascontiguousarray(gw_t.swapaxes(1, 2)).reshape(w_shape)
        win = _windows(x.shape, w_shape, x.dtype.itemsize, stride, padding, dilation)
        g = grad.reshape(n, groups, o // groups, win.oh * win.ow)
        cols = win.zeroed_columns(x.dtype)
        for start, stop in win.blocks:
            block = win.columns(x[start:stop], cols[:stop - start]).reshape(-1, groups, k, win.oh * win.ow)
            gw_t += self.matmul(block, g[start:stop].swapaxes(2, 3)).sum(axis=0)
        return xp.ascontiguousarray(gw_t.swapaxes(1, 2)).reshape(w_shape)

    def conv2d_input_grad(self, grad, weight, x_shape, stride, padding, dilation, groups):
        """dX (N, C, H, W) from dY (N, O, OH, OW): dcolumns = W^T @ dY, added back where read."""
        xp = self.xp
        n, c, _, _ = x_shape
        o, cg, kh, kw = weight.shape
        k = cg * kh * kw
        wmat_t = xp.ascontiguousarray(weight.reshape(groups, o // groups, k).swapaxes(1, 2))  # small
        wide = _wide(x_shape, weight.shape, grad.dtype.itemsize, stride, padding, dilation)
        if wide is not None:
            dx = xp.empty(x_shape, dtype=grad.dtype)
            dh, dw = dilation
            for start, stop in wide.blocks:
                b = stop - start
                g = wide.widened(grad[start:stop]).reshape(b, groups, o // groups, wide.length)
                dcols = _scratch.get("columns", (b, groups, k, wide.length), grad.dtype)
                self._matmul_into(wmat_t, g, dcols)
                dcols = dcols.reshape(b, c, kh, kw, wide.length)
                planes = _scratch.get("planes", (b, c, wide.plane), grad.dtype)
                planes.fill(0)
                for i in range(kh):
                    for j in range(kw):
                        s = i * dh * wide.wp + j * dw
                        planes[:, :, s: s + wide.length] += dcols[:, :, i, j]
                dx[start:stop] = wide.interior(planes)
            return dx
        win = _windows(x_shape, weight.shape, grad.dtype.itemsize, stride, padding, dilation)
        g = grad.reshape(n, groups, o // groups, win.oh * win.ow)
        dx = xp.zeros(x_shape, dtype=grad.dtype)
        for start, stop in win.blocks:
            dcols = _scratch.get("columns", (stop - start, groups, k, win.oh * win.ow), grad.dtype)
            dcols = self._matmul_into(wmat_t, g[start:stop], dcols)
            win.add_back(dcols.reshape((-1,) + win.shape), dx[start:stop])
        return dx
