"""Convolutions by implicit GEMM on the tensor cores (channels-last, 16-bit operands), and the
choice of kernel for each shape.

Five families of kernels compute the same products (docs/gpu-performance.md tells their story):
`mma` (implicit_gemm.cu, mma.sync, any GPU from sm_80), `wgmma` (implicit_gemm_wgmma.cu, Hopper's
warpgroup instructions; two warpgroups copy and multiply in turn), `wgmma_specialized` (the same
file; one warpgroup copies, two multiply) and, over multiples of 64 channels, `tma` (conv_tma.cu:
one thread has Hopper's copy engine fetch whole tiles, two warpgroups multiply; forward and
weight gradient) and `tma_pingpong` (the same file: the forward's copies by TMA, a block a
multiprocessor, each warpgroup taking whole tiles in turn so that one's stores overlap the
other's multiplies). Which is fastest depends on the shape: a fixed rule, drawn from
measurements on ResNet-9's layers, picks one; with `set_benchmark(True)` (what
`torch.backends.cudnn.benchmark = True` sets) the first call of each shape times every candidate
instead, and later calls reuse the fastest, as cuDNN's benchmark mode does.
"""
import functools
from typing import NamedTuple

import numpy as np

from ..array_backend import LOW_PRECISION, conv_output_size
from .tensor_maps import IM2COL_CORNER, TensorMaps

_benchmark = [False]


def set_benchmark(on):
    """Time the candidate kernels of each new convolution shape (True) or follow the rule (False)."""
    _benchmark[0] = bool(on)


def benchmarking():
    return _benchmark[0]


class ConvKernel(NamedTuple):
    """One way to launch a convolution pass: the kernel family, the width of its N tile and how
    many blocks share a multiprocessor: for the weight gradient, the number its split of the
    pixels aims at (more blocks keep more of the GPU busy; fewer leave fewer partial sums to
    add); for the tma kernels, also the number their stages leave room for."""
    family: str  # "mma", "wgmma", "wgmma_specialized", "tma" or "tma_pingpong"
    n_tile: int
    blocks_per_sm: int = 4


class ImplicitGemmConvolutions:
    """The implicit-GEMM part of `CUDABackend` (which provides `_kernels`, `_empty`, `_launch`,
    `_contig`, `_cp_device`, `_multiprocessors`, `cupy`, `use_wgmma` and `_conv_choices`, the kernel
    chosen for each shape in benchmark mode)."""

    # M tiles of 128 rows; implicit_gemm.cu's k tile and stages (BK, STAGES), chosen by
    # scripts/tune_implicit_gemm.py
    _TILE = 128
    implicit_gemm_tile = (64, 3)
    # implicit_gemm_wgmma.cu's stages: the forward's 3 for N <= 128 let two blocks share a
    # multiprocessor, the specialized kernels fill one with as many as fit (docs/gpu-performance.md)
    _SPECIALIZED_STAGES = {64: 6, 128: 5, 256: 4}
    _SHARED_PER_SM = 228 * 1024  # Hopper's shared memory a multiprocessor (1 KiB of it reserved a block)
    wgmma_specialized_min_k = 1152  # the rule: reductions from this long on warp-specialized
    wgmma_wgrad_min_channels = 256  # the rule: the weight gradient by wgmma from this many outputs on
    conv_kernels = {}  # pass ("fprop", "wgrad") -> a ConvKernel to run whatever the shape (tests, tuning)
    _ROUNDS = 5  # timed launches of each candidate in benchmark mode

    def supports_implicit_gemm(self, dtype, in_channels, out_channels, groups):
        return (dtype in LOW_PRECISION and groups == 1 and in_channels % 8 == 0 and out_channels % 8 == 0
                and self.compute_capability >= (8, 0))

    # ------------------------------------------------------------ candidates
    @staticmethod
    def _wide(o):
        """The narrowest wgmma N tile of 64, 128 and 256 that covers o output channels."""
        return 64 if o <= 64 else 128 if o <= 128 else 256

    def _fprop_rule(self, o, k, tma):
        if not self.use_wgmma:  # a 128-wide tile idles half its columns below 64 outputs
            return ConvKernel("mma", 64 if o <= 64 else self._TILE)
        wide = self._wide(o)
        if tma:
            return ConvKernel("tma", wide, 2 if wide <= 128 else 1)
        return ConvKernel("wgmma_specialized" if wide >= 128 and k >= self.wgmma_specialized_min_k else "wgmma", wide)

    def _wgrad_rule(self, o):
        return ConvKernel("wgmma", 256) if self.use_wgmma and o >= self.wgmma_wgrad_min_channels else \
            ConvKernel("mma", self._TILE)

    def _candidates(self, rule, others):
        """The rule's kernel first, then the others; off Hopper, mma alone."""
        out = []
        for k in (rule, *others):
            if (k.family == "mma" or self.use_wgmma) and k not in out:
                out.append(k)
        return out

    def _fprop_candidates(self, o, k, tma):
        widths = sorted({self._wide(o), min(self._wide(o), 128)}, reverse=True)
        tiles = [ConvKernel(f, n) for n in widths for f in ("wgmma", "wgmma_specialized")]
        if tma:
            tiles += [ConvKernel("tma", n, b) for n in widths for b in ((1, 2) if n <= 128 else (1,))]
            tiles += [ConvKernel("tma_pingpong", n, 1) for n in sorted({min(self._wide(o), 128), 64})]
        return self._candidates(self._fprop_rule(o, k, tma),
                                [*tiles, ConvKernel("mma", 64 if o <= 64 else self._TILE)])

    def _wgrad_candidates(self, o, tma):
        others = [ConvKernel(f, n, b) for f in ("wgmma_specialized", "wgmma") for n in (256, 128) for b in (4, 2, 1)]
        if tma:
            others += [ConvKernel("tma", 256, 1), ConvKernel("tma", 128, 1), ConvKernel("tma", 128, 2)]
        return self._candidates(self._wgrad_rule(o), others + [ConvKernel("mma", self._TILE, b) for b in (4, 2)])

    def _choose_and_run(self, key, rule, candidates, run):
        """run(kernel) for the kernel chosen for `key`: the rule's, or in benchmark mode the one
        found fastest among candidates() (made only then) at the key's first call outside a graph
        capture (which cannot wait for timings); that call runs the winner last, so its result is
        the one left."""
        chosen = self.conv_kernels.get(key[0])
        if chosen is None and benchmarking():
            chosen = self._conv_choices.get(key)
            if chosen is None and not self.cupy.cuda.get_current_stream().is_capturing():
                kernels = candidates()
                if len(kernels) > 1:
                    chosen = self._conv_choices[key] = self._fastest(kernels, run)
        run(chosen or rule)

    def _fastest(self, candidates, run):
        """The candidate with the shortest run(kernel), by CUDA events: each is launched once to
        compile it, then all are timed in turn, round after round, keeping each one's best, so a
        GPU still raising its clock does not favour the last ones. Each timed run follows an
        untimed one still in the GPU's queue, so the host's time to launch it is not counted."""
        cupy = self.cupy
        for kernel in candidates:
            run(kernel)
        best = dict.fromkeys(candidates, float("inf"))
        for _ in range(self._ROUNDS):
            for kernel in candidates:
                run(kernel)
                start, stop = cupy.cuda.Event(), cupy.cuda.Event()
                start.record()
                run(kernel)
                stop.record()
                stop.synchronize()
                best[kernel] = min(best[kernel], cupy.cuda.get_elapsed_time(start, stop))
        return min(candidates, key=best.get)

    # -------------------------------------------------------------- launches
    def _stages(self, kernel, pass_name):
        if kernel.family == "mma":
            return self.implicit_gemm_tile[1]
        if kernel.family == "wgmma_specialized":
            return self._SPECIALIZED_STAGES[kernel.n_tile]
        if kernel.family.startswith("tma"):  # as many as fit beside the other blocks, up to 8
            # (a block's share, less the 1 KiB reserved for it, the 1 KiB of alignment and 1 KiB spare)
            room = self._SHARED_PER_SM // kernel.blocks_per_sm - 3072
            return min(8, room // ((self._TILE + kernel.n_tile) * 64 * 2 + 16))
        return 3 if kernel.n_tile <= 128 and pass_name == "fprop" else 4

    def _shared_bytes(self, kernel, pass_name):
        """Shared memory for the kernel's stages: implicit_gemm.cu's STAGES tiles of both operands;
        implicit_gemm_wgmma.cu's, the specialized kernels' barriers, and 1 KiB more to start the
        stages on the 1024-byte period of the swizzle."""
        stages, n = self._stages(kernel, pass_name), kernel.n_tile
        if kernel.family == "mma":
            return stages * (self._TILE + n) * self.implicit_gemm_tile[0] * 2
        return stages * ((self._TILE + n) * 64 * 2 + 16) + 1024

    def _launch_kernel(self, kernel, pass_name, dtype, grid, args):
        """One launch of `pass_name` ("fprop" or "wgrad") by `kernel`."""
        smem = self._shared_bytes(kernel, pass_name)
        if kernel.family == "mma":
            self._launch_gemm("implicit_gemm.cu", f"conv_{pass_name}", dtype, grid, args,
                              self._mma_defines(kernel.n_tile), smem)
            return
        defines = (f"-DWG_BN={kernel.n_tile}", f"-DWG_STAGES={self._stages(kernel, pass_name)}")
        name = f"conv_{pass_name}_{kernel.family}"
        if kernel.family.startswith("tma"):  # two warpgroups and the copying warp
            self._launch_gemm("conv_tma.cu", name, dtype, grid, args,
                              defines + (f"-DWG_MIN_BLOCKS={kernel.blocks_per_sm}",), smem, threads=288)
        else:
            self._launch_gemm("implicit_gemm_wgmma.cu", name, dtype, grid, args, defines, smem,
                              threads=384 if kernel.family == "wgmma_specialized" else 256)

    def _mma_defines(self, n_tile):
        bk, stages = self.implicit_gemm_tile
        return f"-DIGEMM_BK={bk}", f"-DIGEMM_STAGES={stages}", f"-DIGEMM_FPROP_BN={n_tile}"

    def _launch_gemm(self, filename, kernel, dtype, grid, args, defines, smem, threads=256):
        """`threads` a block, `smem` bytes of dynamic shared memory (opted in above 48 KiB)."""
        with self._cp_device:
            fn = self._kernels.get(filename, kernel, dtype, defines)
            if fn.max_dynamic_shared_size_bytes < smem:
                fn.max_dynamic_shared_size_bytes = smem
            fn(grid, (threads,), args, shared_mem=smem)

    def _nhwc_args(self, x_shape, kernel, stride, padding, dilation, out_channels, out_size=None):
        n, h, w, c = (int(s) for s in x_shape)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        oh, ow = out_size or (conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw))
        if max(n * h * w * c, n * oh * ow * out_channels) >= 2 ** 31:
            raise ValueError(f"conv2d_nhwc(): input (N, H, W, C) = {tuple(x_shape)} with {out_channels} output "
                             f"channels has 2**31 elements or more, past the kernels' 32-bit offsets: use a smaller "
                             f"batch")
        ints = [np.int32(v) for v in (n, h, w, c, out_channels, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)]
        return (n, oh, ow), ints

    # ---------------------------------------------------------------- passes
    def conv2d_nhwc(self, x, weight, bias, stride, padding, dilation, out=None):
        """y (N, OH, OW, O) of x (N, H, W, C) and weight (O, KH, KW, C), contiguous 16-bit
        arrays, by implicit GEMM on the tensor cores; `bias` (O,) or None, added in float.
        `out`, if given, is the y to write: an (N, OH', OW', O) view with contiguous channels (a
        sub-grid of a larger array, say), whose OH' x OW' pixels are computed whatever the
        output size formula says (windows past the input read zeros)."""
        o, kh, kw, c = (int(s) for s in weight.shape)
        (n, oh, ow), ints = self._nhwc_args(x.shape, (kh, kw), stride, padding, dilation, o,
                                            None if out is None else out.shape[1:3])
        rows = 65535 * self._TILE // (oh * ow)  # images whose pixel tiles a grid's 65535 rows hold
        if not rows:
            raise ValueError(f"conv2d_nhwc(): an output of {oh}x{ow} pixels is too large for one launch")
        if n > rows:  # one launch per slice of the batch, each writing its rows of y
            y = self._empty((n, oh, ow, o), x.dtype) if out is None else out
            for i in range(0, n, rows):
                self.conv2d_nhwc(x[i:i + rows], weight, bias, stride, padding, dilation, out=y[i:i + rows])
            return y
        if out is None:
            y, pixels = self._empty((n, oh, ow, o), x.dtype), (oh * ow, ow, 1)
        else:
            y, pitch = out, o * out.itemsize
            if y.dtype != x.dtype or (y.shape[0], y.shape[3]) != (n, o) or y.strides[3] != y.itemsize or \
                    any(s % pitch for s in y.strides[:3]):
                raise ValueError(f"conv2d_nhwc(): out must be an (N, OH, OW, O) view of {x.dtype} with "
                                 f"N, O = {n}, {o} and contiguous channels, got {y.shape} {y.dtype} with strides "
                                 f"{y.strides}")
            pixels = (s // pitch for s in y.strides[:3])
        bias = np.uint64(0) if bias is None else self._contig(bias, np.float32)
        pixels = tuple(np.int32(p) for p in pixels)
        args = (x, weight, bias, y, *ints, *pixels)
        tma = self._im2col_box(x, stride, padding, (oh, ow))
        rule = self._fprop_rule(o, kh * kw * c, tma is not None)

        def run(kernel):
            if kernel.family.startswith("tma") and tma is None:  # asked for in conv_kernels, on a shape it cannot take
                kernel = self._fprop_rule(o, kh * kw * c, False)
            grid = (-(-o // kernel.n_tile), -(-n * oh * ow // self._TILE))
            if kernel.family == "tma_pingpong":  # persistent: a block a multiprocessor
                grid = (min(grid[0] * grid[1], self._multiprocessors),)
            if kernel.family.startswith("tma"):
                maps = (self._tensor_maps.im2col(x, *tma, channels=64, pixels=self._TILE),
                        self._tensor_maps.tiled(weight.reshape(o, -1), (64, kernel.n_tile)))
                self._launch_kernel(kernel, "fprop", x.dtype, grid, (*maps, bias, y, ints[0], *ints[3:], *pixels))
            else:
                self._launch_kernel(kernel, "fprop", x.dtype, grid, args)
        key = ("fprop", x.dtype, x.shape, weight.shape, stride, padding, dilation, y.shape, y.strides)
        self._choose_and_run(key, rule, lambda: self._fprop_candidates(o, kh * kw * c, tma is not None), run)
        return y

    def _im2col_box(self, x, stride, padding, out_size):
        """The (lower, upper, strides) of the im2col map a `tma` kernel over x reads, or None where
        none can serve: off Hopper, channels not a multiple of 64 (a k tile is then not one tap's
        channels), or strides or box corners past what a map can hold. The box is that of the
        windows' origins: from (-PW, -PH) to the last output pixel's origin."""
        n, h, w, c = x.shape
        if not self.use_wgmma or c % 64 or max(stride) > 8:
            return None
        lower = (-padding[1], -padding[0])
        upper = ((out_size[1] - 1) * stride[1] - padding[1] - (w - 1),
                 (out_size[0] - 1) * stride[0] - padding[0] - (h - 1))
        if not all(IM2COL_CORNER[0] <= v <= IM2COL_CORNER[1] for v in lower + upper):
            return None
        return lower, upper, (stride[1], stride[0])

    @functools.cached_property
    def _tensor_maps(self):
        return TensorMaps()

    def conv2d_nhwc_weight_grad(self, x, grad, kernel, stride, padding, dilation, channels_last):
        """dW of conv2d_nhwc from x (N, H, W, C) and the output gradient (N, OH, OW, O):
        (O, C, KH, KW) contiguous, or (O, KH, KW, C) with `channels_last`. The pixels are split
        among the kernel's `blocks_per_sm` blocks a multiprocessor, each taking at least 8 tiles
        of 64 pixels; the float partial sums are added in a fixed order."""
        (kh, kw), o, c = kernel, int(grad.shape[3]), int(x.shape[3])
        (n, oh, ow), ints = self._nhwc_args(x.shape, kernel, stride, padding, dilation, o)
        k = kh * kw * c
        dw = self._empty((o, kh, kw, c) if channels_last else (o, c, kh, kw), x.dtype)

        tma = self._im2col_box(x, stride, padding, (oh, ow))

        def run(kern):
            if kern.family == "tma" and tma is None:  # asked for in conv_kernels, on a shape it cannot take
                kern = self._wgrad_rule(o)
            pixel_tiles = -(-n * oh * ow // (self.implicit_gemm_tile[0] if kern.family == "mma" else 64))
            grid_mn = (-(-k // kern.n_tile), -(-o // self._TILE))
            blocks = self._multiprocessors * kern.blocks_per_sm
            splits = max(1, min(pixel_tiles // 8, -(-blocks // (grid_mn[0] * grid_mn[1]))))
            tiles = -(-pixel_tiles // splits)
            splits = -(-pixel_tiles // tiles)
            partial = self._empty((splits, o, k), np.float32)
            if kern.family == "tma":
                args = (self._tensor_maps.im2col(x, *tma, channels=64, pixels=64),
                        self._tensor_maps.tiled(grad.reshape(-1, o), (64, 64)), partial, ints[0], *ints[3:])
            else:
                args = (x, grad, partial, *ints)
            self._launch_kernel(kern, "wgrad", x.dtype, grid_mn + (splits,), args + (np.int32(tiles),))
            self._launch("implicit_gemm.cu", "conv_wgrad_sum", x.dtype, dw.size,
                         (partial, dw, np.int32(o), np.int32(c), np.int32(kh * kw), np.int32(splits),
                          np.int32(not channels_last)), defines=self._mma_defines(self._TILE))
        key = ("wgrad", x.dtype, x.shape, grad.shape, kernel, stride, padding, dilation)
        self._choose_and_run(key, self._wgrad_rule(o), lambda: self._wgrad_candidates(o, tma is not None), run)
        return dw
