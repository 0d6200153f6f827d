"""conv2d by im2col a few samples at a time, for the CPU.

The columns of a whole batch are kh*kw times its input, far larger than the cache, so
writing and reading them back runs at memory speed. A block of samples whose columns fit
`COLUMNS_BYTES` is copied and multiplied while the columns are still in cache, and the
product of one sample, W (O, K) @ columns (K, OH*OW), is already the (O, OH, OW) slice
of the output: no transpose of the result either. The input is never padded: each kernel
offset copies the part of the columns that falls inside it, and the rest of the (zeroed)
columns stays 0.

Shapes of a block of b samples (g = groups, K = C/g * kh * kw, L = OH * OW):
    columns  (b, g, K, L)      weight (g, O/g, K)
    y        (b, g, O/g, L) = weight @ columns
    dW       (g, O/g, K)    = sum over the block of (columns @ dY^T)^T
    dX       col2im of weight^T @ dY (b, g, K, L): kh*kw strided adds
"""
from .array_backend import conv_output_size

COLUMNS_BYTES = 2 << 20  # about the L2 + a share of L3 of one core


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


class BlockedConv:
    """conv2d and its gradients, mixed into a backend whose array module is NumPy."""
    conv_in_blocks = True

    def _geometry(self, x_shape, w_shape, dtype, stride, padding, dilation):
        """(OH, OW, samples per block, kernel offsets)."""
        n, c, h, w = x_shape
        _, _, kh, kw = w_shape
        oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
        ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
        block = max(1, min(n, COLUMNS_BYTES // (c * kh * kw * oh * ow * dtype.itemsize)))
        return oh, ow, block, list(_offsets(x_shape, (kh, kw), (oh, ow), stride, padding, dilation))

    def _columns(self, x, cols, start, offsets):
        """The columns (b, C, kh, kw, OH, OW) of samples start..start+b of x (their zeros kept)."""
        block = x[start: start + cols.shape[0]]
        for i, j, dst, src in offsets:
            cols[:, :, i, j, dst[0], dst[1]] = block[:, :, src[0], src[1]]
        return cols

    def conv2d(self, x, weight, stride, padding, dilation, groups):
        """y (N, O, OH, OW), C-contiguous, without bias."""
        xp = self.xp
        n, c, _, _ = x.shape
        o, cg, kh, kw = weight.shape
        oh, ow, b, offsets = self._geometry(x.shape, weight.shape, x.dtype, stride, padding, dilation)
        wmat = weight.reshape(groups, o // groups, cg * kh * kw)
        cols = xp.zeros((b, c, kh, kw, oh, ow), dtype=x.dtype)
        out = xp.empty((n, groups, o // groups, oh * ow), dtype=x.dtype)
        for start in range(0, n, b):
            block = self._columns(x, cols[:n - start], start, offsets)
            out[start: start + b] = self.matmul(wmat, block.reshape(-1, groups, cg * kh * kw, oh * ow))
        return out.reshape(n, o, oh, ow)

    def conv2d_weight_grad(self, x, grad, w_shape, stride, padding, dilation, groups):
        """dW (O, C/g, kh, kw) from the input x and dY (N, O, OH, OW)."""
        xp = self.xp
        n, c, _, _ = x.shape
        o, cg, kh, kw = w_shape
        oh, ow, b, offsets = self._geometry(x.shape, w_shape, x.dtype, stride, padding, dilation)
        g = grad.reshape(n, groups, o // groups, oh * ow)
        cols = xp.zeros((b, c, kh, kw, oh, ow), dtype=x.dtype)
        gw_t = xp.zeros((groups, cg * kh * kw, o // groups), dtype=x.dtype)  # columns @ dY^T: OpenBLAS's faster form
        for start in range(0, n, b):
            block = self._columns(x, cols[:n - start], start, offsets)
            block = block.reshape(-1, groups, cg * kh * kw, oh * ow)
            gw_t += self.matmul(block, g[start: start + b].swapaxes(2, 3)).sum(axis=0)
        return xp.ascontiguousarray(gw_t.swapaxes(1, 2)).reshape(w_shape)

    def conv2d_input_grad(self, grad, weight, x_shape, stride, padding, dilation, groups):
        """dX (N, C, H, W) from dY (N, O, OH, OW): dcolumns = W^T @ dY, added back where read."""
        xp = self.xp
        n, c, _, _ = x_shape
        o, cg, kh, kw = weight.shape
        oh, ow, b, offsets = self._geometry(x_shape, weight.shape, grad.dtype, stride, padding, dilation)
        g = grad.reshape(n, groups, o // groups, oh * ow)
        wmat_t = xp.ascontiguousarray(weight.reshape(groups, o // groups, cg * kh * kw).swapaxes(1, 2))  # small
        dx = xp.zeros(x_shape, dtype=grad.dtype)
        for start in range(0, n, b):
            dcols = self.matmul(wmat_t, g[start: start + b]).reshape(-1, c, kh, kw, oh, ow)
            block = dx[start: start + b]
            for i, j, dst, src in offsets:
                block[:, :, src[0], src[1]] += dcols[:, :, i, j, dst[0], dst[1]]
        return dx
