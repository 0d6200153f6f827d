"""`conv2d` by im2col: every receptive field becomes a column, and the whole
batch's convolution is one GEMM per group with the flattened weight.

Shapes (g = groups, K = C/g * kh * kw, M = N * OH * OW):
    columns  (C * kh * kw, M)   = backend.im2col(x)      viewed as (g, K, M)
    weight   (O, C/g, kh, kw)                            viewed as (g, O/g, K)
    output   (g, O/g, M) = weight @ columns              -> (N, O, OH, OW)
Backward:
    dW       = dY @ columns^T                            (g, O/g, K)
    dX       = for stride 1 (no dilation, one group, columns at most twice col2im's): the
               convolution of dY with the kernel flipped and its channels swapped, padded
               by k - 1 - p; otherwise dcolumns = W^T @ dY, then backend.col2im (the
               adjoint of im2col)
    db       = dY summed over N, OH, OW
On the CPU (`backend.conv_in_blocks`) the same products run a block of samples at a
time, the columns in cache (backend/blocked_conv.py).
The columns are rebuilt in backward rather than kept: they are kh*kw times the
size of the input, and rebuilding them is cheap next to the GEMMs.

Where the backend has it (`supports_implicit_gemm`: a GPU, 16-bit operands, one group,
channels in multiples of 8), the convolution runs channels-last by implicit GEMM instead:
no columns in memory, the output channels-last, and the input gradient again convolutions
of dY with the flipped kernel: one for stride 1, and for stride s one for each residue
class of the input pixels modulo s (`_subconvolutions`).
"""
from ...autograd.function import Function
from ...backend.array_backend import conv_output_size, is_channels_last
from ...ops import autocast_policy
from ...ops.util import contiguous
from .util import check_float, check_same_device, check_same_dtype, check_tensor, conv_padding, pair


def _gemm(backend, a, b):
    """a @ b for stacks of g matrices; a plain 2-D product when g == 1."""
    if a.shape[0] == 1:
        return backend.matmul(a[0], b[0])[None]
    return backend.matmul(a, b)


def _convolve(backend, xp, x, weight, stride, padding, dilation, groups):
    """The convolution of raw arrays, without bias: im2col, one GEMM per group, back to (N, O, OH, OW)."""
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    cols = backend.im2col(contiguous(xp, x), (kh, kw), stride, padding, dilation)  # (C*kh*kw, N*OH*OW)
    cols = cols.reshape(groups, cg * kh * kw, n * oh * ow)
    wmat = weight.reshape(groups, o // groups, cg * kh * kw)
    return _gemm(backend, wmat, cols).reshape(o, n, oh, ow)  # (O, N, OH, OW)


def _nhwc(backend, a, channels=None):
    """The contiguous (N, H, W, C) array of an (N, C, H, W) one, a view when `a` is channels-last;
    with `channels` > C, zero channels are added up to that number."""
    xp = backend.xp
    if channels is None or channels == a.shape[1]:
        return backend.ascontiguousarray(a.transpose(0, 2, 3, 1))
    out = xp.zeros(a.shape[:1] + a.shape[2:] + (channels,), dtype=a.dtype)
    out[..., :a.shape[1]] = a.transpose(0, 2, 3, 1)
    return out


def _padded_channels(c):
    """Input channels of the implicit GEMM: a multiple of 8 (a 3-channel image gets 5 zero channels)."""
    return -(-c // 8) * 8


def _flippable(w_shape, stride, padding, dilation):
    """Whether dX can be the convolution of dY with the flipped kernel: stride 1, no dilation,
    padding below the kernel size."""
    return stride == (1, 1) and dilation == (1, 1) and padding[0] < w_shape[2] and padding[1] < w_shape[3]


def _input_grad_by_flipped_kernel(x_shape, w_shape, grad_shape, stride, padding, dilation, groups, ratio=2):
    """Whether dX is better the convolution of dY with the flipped kernel than col2im: its columns
    (O*kh*kw, N*H*W) against col2im's (C*kh*kw, N*OH*OW), the first the faster kernel, col2im the
    smaller input where the padding is less than 'same'. On the CPU (`ratio` 1) col2im adds
    back in cache, and the flipped kernel pays only for columns no larger than the input's."""
    (_, c, h, w), o, (oh, ow) = x_shape, w_shape[0], grad_shape[2:]
    return groups == 1 and _flippable(w_shape, stride, padding, dilation) and o * h * w <= ratio * c * oh * ow


def _flipped(xp, weight):
    """The kernel of dX as a convolution of dY: flipped, its channels swapped (C, O, kh, kw)."""
    return xp.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def _flipped_padding(w_shape, padding):
    return w_shape[2] - 1 - padding[0], w_shape[3] - 1 - padding[1]


def _taps(k, s, p):
    """Per residue r of the input rows modulo the stride s (kernel k, padding p): the taps kh
    reaching rows s*a + r (kh = r + p - s*d lands on dY row a + d) as (last tap, padding) of
    a stride-1 convolution of dY with taps last, last - s, ... down to 0, or None if no tap
    does; [] when some residue would need negative padding."""
    out = []
    for r in range(s):
        last = k - 1 - (k - 1 - r - p) % s
        if last < 0:
            out.append(None)
        elif last < r + p:
            return []
        else:
            out.append((last, (last - r - p) // s))
    return out


def _subconvolutions(w_shape, stride, padding, dilation):
    """dX of a strided convolution as stride-1 convolutions of dY, one for each residue (rh, rw)
    of the input pixel modulo the stride, with the kernel's taps of that residue flipped:
    [(rh, rw, taps_h, taps_w)] (None taps: that residue gets no gradient), or None where this
    does not apply (dilation, or padding past the kernel)."""
    if dilation != (1, 1):
        return None
    th, tw = _taps(w_shape[2], stride[0], padding[0]), _taps(w_shape[3], stride[1], padding[1])
    if not th or not tw:
        return None
    return [(rh, rw, a, b) for rh, a in enumerate(th) for rw, b in enumerate(tw)]


def _input_grad_by_subconvolutions(backend, xp, g, weight, x_shape, stride, plan):
    """dX (N, H, W, C) from dY (N, OH, OW, O), each residue's sub-grid of dX written in place by
    its convolution (`_subconvolutions`); a residue no tap reaches stays zero."""
    n, c, h, w = x_shape
    (sh, sw), empty = stride, any(a is None or b is None for _, _, a, b in plan)
    gx = (xp.zeros if empty else xp.empty)((n, h, w, c), dtype=g.dtype)
    for rh, rw, taps_h, taps_w in plan:
        if taps_h is None or taps_w is None or rh >= h or rw >= w:
            continue
        (last_h, pad_h), (last_w, pad_w) = taps_h, taps_w
        kernel = _nhwc(backend, weight[:, :, last_h::-sh, last_w::-sw].transpose(1, 0, 2, 3))  # (C, kh', kw', O)
        backend.conv2d_nhwc(g, kernel, None, (1, 1), (pad_h, pad_w), (1, 1), out=gx[:, rh::sh, rw::sw])
    return gx


def _input_grad_by_col2im(backend, xp, weight, gmat, x_shape, stride, padding, dilation, groups):
    """dX of any convolution: dcolumns = W^T @ dY ((g, O/g, M) as `gmat`), then col2im."""
    o, cg, kh, kw = weight.shape
    k = cg * kh * kw
    wmat_t = xp.ascontiguousarray(weight.reshape(groups, o // groups, k).transpose(0, 2, 1))  # small
    dcols = _gemm(backend, wmat_t, gmat).reshape(x_shape[1] * kh * kw, -1)
    return backend.col2im(dcols, x_shape, (kh, kw), stride, padding, dilation)


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        xp, backend = ctx.xp, ctx.backend
        ctx.geometry = (x.shape, weight.shape, stride, padding, dilation, groups)
        need_x, need_w = ctx.needs_input_grad[:2]
        c8 = _padded_channels(x.shape[1])
        ctx.implicit_gemm = backend.supports_implicit_gemm(x.dtype, c8, weight.shape[0], groups)
        if ctx.implicit_gemm:
            x_nhwc = _nhwc(backend, x, c8)
            ctx.weight_channels_last = is_channels_last(weight)
            ctx.save_for_backward(x_nhwc if need_w else None, weight if need_x else None)
            y = backend.conv2d_nhwc(x_nhwc, _nhwc(backend, weight, c8), bias, stride, padding, dilation)
            return y.transpose(0, 3, 1, 2)
        ctx.save_for_backward(x if need_w else None, weight if need_x else None)
        if backend.conv_in_blocks:
            out = backend.conv2d(x, weight, stride, padding, dilation, groups)
            if bias is not None:
                out += bias[:, None, None]
            return out
        out = _convolve(backend, xp, x, weight, stride, padding, dilation, groups)
        if bias is not None:
            out += bias[:, None, None, None]
        return backend.swap_leading(out)

    @staticmethod
    def backward(ctx, grad):
        if ctx.implicit_gemm:
            return _implicit_gemm_backward(ctx, grad)
        if ctx.backend.conv_in_blocks:
            return _blocked_backward(ctx, grad)
        x, weight = ctx.saved
        xp, backend = ctx.xp, ctx.backend
        x_shape, w_shape, stride, padding, dilation, groups = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        n = x_shape[0]
        o, cg, kh, kw = w_shape
        oh, ow = grad.shape[2:]
        k = cg * kh * kw
        # (N, O, OH, OW) -> (g, O/g, N*OH*OW), the layout of the forward GEMM's output
        gmat = backend.swap_leading(contiguous(xp, grad)).reshape(groups, o // groups, n * oh * ow)
        gx = gw = gb = None
        # operand layouts chosen for speed: OpenBLAS is up to 10x slower on dY @ columns^T and
        # W^T @ dY as views than on these equivalent forms (both are free on cuBLAS)
        if need_w:
            cols = backend.im2col(contiguous(xp, x), (kh, kw), stride, padding, dilation)
            cols = cols.reshape(groups, k, n * oh * ow)
            gw = _gemm(backend, cols, gmat.transpose(0, 2, 1))                    # (g, K, O/g) = (dY cols^T)^T
            gw = xp.ascontiguousarray(gw.transpose(0, 2, 1)).reshape(w_shape)  # C order: what optimizers read
        if need_x and _input_grad_by_flipped_kernel(x_shape, w_shape, grad.shape, stride, padding, dilation, groups):
            gx = _convolve(backend, xp, grad, _flipped(xp, weight), (1, 1), _flipped_padding(w_shape, padding),
                           (1, 1), 1)
            gx = backend.swap_leading(gx)
        elif need_x:
            gx = _input_grad_by_col2im(backend, xp, weight, gmat, x_shape, stride, padding, dilation, groups)
        if need_b:
            gb = grad.sum(axis=(0, 2, 3))
        return gx, gw, gb, None, None, None, None


def _blocked_backward(ctx, grad):
    """Conv2d's backward where the backend convolves a block of samples at a time (the CPU)."""
    x, weight = ctx.saved
    backend = ctx.backend
    x_shape, w_shape, stride, padding, dilation, groups = ctx.geometry
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    grad = contiguous(ctx.xp, grad)
    gx = gw = gb = None
    if need_w:
        gw = backend.conv2d_weight_grad(x, grad, w_shape, stride, padding, dilation, groups)
    if need_x and _input_grad_by_flipped_kernel(x_shape, w_shape, grad.shape, stride, padding, dilation, groups,
                                                ratio=1):
        gx = backend.conv2d(grad, _flipped(ctx.xp, weight), (1, 1), _flipped_padding(w_shape, padding), (1, 1), 1)
    elif need_x:
        gx = backend.conv2d_input_grad(grad, weight, x_shape, stride, padding, dilation, groups)
    if need_b:
        gb = grad.sum(axis=(0, 2, 3))
    return gx, gw, gb, None, None, None, None


def _implicit_gemm_backward(ctx, grad):
    """Conv2d's backward on the implicit-GEMM path: everything channels-last."""
    x_nhwc, weight = ctx.saved
    xp, backend = ctx.xp, ctx.backend
    x_shape, w_shape, stride, padding, dilation, _ = ctx.geometry
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    o, c, kh, kw = w_shape
    g = _nhwc(backend, grad)  # (N, OH, OW, O)
    gx = gw = gb = None
    if need_w:
        cl = ctx.weight_channels_last  # the gradient in the weight's layout, without the added zero channels
        gw = backend.conv2d_nhwc_weight_grad(x_nhwc, g, (kh, kw), stride, padding, dilation, cl)
        gw = xp.ascontiguousarray(gw[..., :c]).transpose(0, 3, 1, 2) if cl else xp.ascontiguousarray(gw[:, :c])
    plan = need_x and c % 8 == 0 and _subconvolutions(w_shape, stride, padding, dilation)
    if plan:
        gx = _input_grad_by_subconvolutions(backend, xp, g, weight, x_shape, stride, plan).transpose(0, 3, 1, 2)
    elif need_x:
        gmat = xp.ascontiguousarray(g.reshape(-1, o).T)[None]  # (1, O, N*OH*OW)
        gx = _input_grad_by_col2im(backend, xp, weight, gmat, x_shape, stride, padding, dilation, 1)
    if need_b:  # a product with ones: CuPy's sum over the leading axes of few columns runs on few blocks
        rows = g.reshape(-1, o)
        gb = backend.matmul(xp.ones((1, rows.shape[0]), dtype=rows.dtype), rows)[0]
    return gx, gw, gb, None, None, None, None


@autocast_policy.lower_precision
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation of input (N, C, H, W) with weight (O, C/groups, kh, kw)."""
    check_float(input, "input", "conv2d")
    check_tensor(weight, "weight", "conv2d")
    if bias is not None:
        check_tensor(bias, "bias", "conv2d")
    if input.ndim != 4:
        raise ValueError(f"conv2d(): expected a 4-D input (N, C, H, W), got a {input.ndim}-D tensor of shape "
                         f"{tuple(input.shape)}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d(): expected a 4-D weight (out_channels, in_channels/groups, kh, kw), got a "
                         f"{weight.ndim}-D tensor of shape {tuple(weight.shape)}")
    stride, dilation = pair(stride, "stride", "conv2d"), pair(dilation, "dilation", "conv2d")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"conv2d(): groups must be a positive int, got {groups!r}")
    if min(stride) < 1:
        raise ValueError(f"conv2d(): stride must be positive, got {stride}")
    if min(dilation) < 1:
        raise ValueError(f"conv2d(): dilation must be positive, got {dilation}")
    n, c, h, w = input.shape
    o, cg, kh, kw = weight.shape
    padding = conv_padding(padding, (kh, kw), stride, dilation, "conv2d")
    if min(padding) < 0:
        raise ValueError(f"conv2d(): padding must be non-negative, got {padding}")
    if c % groups:
        raise ValueError(f"conv2d(): input of shape {tuple(input.shape)} has {c} channels, which is not divisible by "
                         f"groups={groups}")
    if o % groups:
        raise ValueError(f"conv2d(): weight of shape {tuple(weight.shape)} has {o} output channels, which is not "
                         f"divisible by groups={groups}")
    if cg * groups != c:
        raise ValueError(f"conv2d(): input of shape {tuple(input.shape)} has {c} channels, but weight of shape "
                         f"{tuple(weight.shape)} with groups={groups} expects {cg} * {groups} = {cg * groups} channels")
    eff = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    padded = (h + 2 * padding[0], w + 2 * padding[1])
    if eff[0] > padded[0] or eff[1] > padded[1]:
        raise ValueError(f"conv2d(): kernel size {eff[0]}x{eff[1]} (weight shape {tuple(weight.shape)}, dilation "
                         f"{dilation}) can't be greater than the padded input size {padded[0]}x{padded[1]} "
                         f"(input shape {tuple(input.shape)}, padding {padding})")
    if bias is not None and bias.shape != (o,):
        raise ValueError(f"conv2d(): bias of shape {tuple(bias.shape)} doesn't match weight of shape "
                         f"{tuple(weight.shape)} "
                         f"(expected ({o},))")
    check_same_dtype("conv2d", input, weight=weight, bias=bias)
    check_same_device("conv2d", input, weight=weight, bias=bias)
    return Conv2d.apply(input, weight, bias, stride, padding, dilation, groups)


class ConvTranspose2d(Function):
    """The adjoint of conv2d: each input pixel spreads weight-shaped patches over the output.

    Shapes (K = C_out * kh * kw, M = N * H * W, weight (C_in, C_out, kh, kw)):
        columns (K, M) = weight^T @ x     then backend.col2im -> (N, C_out, OH, OW)
    Backward is conv2d's forward turned around: im2col of dY (K, M), then
        dx = weight @ columns,  dW = x @ columns^T,  db = dY summed over N, OH, OW
    (groups = 1)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, output_padding, dilation):
        xp, backend = ctx.xp, ctx.backend
        n, cin, h, w = x.shape
        _, cout, kh, kw = weight.shape
        oh = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kh - 1) + output_padding[0] + 1
        ow = (w - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kw - 1) + output_padding[1] + 1
        xmat = xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(cin, n * h * w)
        need_x, need_w = ctx.needs_input_grad[:2]
        ctx.save_for_backward(xmat if need_w else None, weight if need_x else None)
        ctx.geometry = (x.shape, weight.shape, stride, padding, dilation)
        wmat_t = xp.ascontiguousarray(weight.reshape(cin, cout * kh * kw).T)  # small
        cols = backend.matmul(wmat_t, xmat)
        out = backend.col2im(cols, (n, cout, oh, ow), (kh, kw), stride, padding, dilation)
        if bias is not None:
            out = out + bias[None, :, None, None]
        return xp.ascontiguousarray(out)

    @staticmethod
    def backward(ctx, grad):
        xmat, weight = ctx.saved
        xp, backend = ctx.xp, ctx.backend
        x_shape, w_shape, stride, padding, dilation = ctx.geometry
        n, cin, h, w = x_shape
        _, cout, kh, kw = w_shape
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        cols = backend.im2col(contiguous(xp, grad), (kh, kw), stride, padding, dilation)  # (C_out*kh*kw, N*H*W)
        gx = gw = gb = None
        if need_x:
            gx = backend.matmul(weight.reshape(cin, cout * kh * kw), cols)
            gx = xp.ascontiguousarray(gx.reshape(cin, n, h, w).transpose(1, 0, 2, 3))
        if need_w:
            gw = xp.ascontiguousarray(backend.matmul(cols, xmat.T).T).reshape(w_shape)
        if need_b:
            gb = grad.sum(axis=(0, 2, 3))
        return gx, gw, gb, None, None, None, None


@autocast_policy.lower_precision
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution of input (N, C_in, H, W) with weight (C_in, C_out, kh, kw): the upsampling
    layer of decoders and generators. Output size (H - 1) * stride - 2 * padding + dilation * (kh - 1)
    + output_padding + 1."""
    fn = "conv_transpose2d"
    check_float(input, "input", fn)
    check_tensor(weight, "weight", fn)
    if groups != 1:
        raise NotImplementedError("torch.nn.functional.conv_transpose2d with groups > 1 is not supported")
    if input.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"{fn}(): expected a 4-D input and weight, got shapes {tuple(input.shape)} and "
                         f"{tuple(weight.shape)}")
    if input.shape[1] != weight.shape[0]:
        raise ValueError(f"{fn}(): input of shape {tuple(input.shape)} has {input.shape[1]} channels, but weight "
                         f"of shape {tuple(weight.shape)} expects {weight.shape[0]}")
    stride, padding = pair(stride, "stride", fn), pair(padding, "padding", fn)
    output_padding, dilation = pair(output_padding, "output_padding", fn), pair(dilation, "dilation", fn)
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"{fn}(): output_padding {output_padding} must be smaller than the stride {stride} or the "
                         f"dilation {dilation}")
    if bias is not None and tuple(bias.shape) != (weight.shape[1],):
        raise ValueError(f"{fn}(): bias of shape {tuple(bias.shape)} doesn't match weight of shape "
                         f"{tuple(weight.shape)} (expected ({weight.shape[1]},))")
    check_same_dtype(fn, input, weight=weight, bias=bias)
    check_same_device(fn, input, weight=weight, bias=bias)
    return ConvTranspose2d.apply(input, weight, bias, stride, padding, output_padding, dilation)


@autocast_policy.lower_precision
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of (N, C, L) with weight (O, C/groups, k): conv2d over a height of 1."""
    check_float(input, "input", "conv1d")
    if input.ndim != 3 or weight.ndim != 3:
        raise ValueError(f"conv1d(): expected a 3-D input (N, C, L) and weight (O, C/groups, k), got shapes "
                         f"{tuple(input.shape)} and {tuple(weight.shape)}")
    def one(v):  # (1, v): the height dimension is 1
        return (1, v[0] if isinstance(v, (tuple, list)) else v)
    pad = padding if isinstance(padding, str) else (0, one(padding)[1])
    return conv2d(input.unsqueeze(2), weight.unsqueeze(2), bias, one(stride), pad, one(dilation), groups).squeeze(2)
