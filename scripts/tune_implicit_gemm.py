"""The implicit-GEMM convolution kernels on ResNet-9's layers, for each configuration, beside
cuDNN (PyTorch, bf16 channels-last) on the same shapes: milliseconds and TFLOP/s of the
forward (fprop), input-gradient (dgrad, an fprop of the flipped kernel) and weight-gradient
(wgrad) passes. A configuration is `rule` (the backend's fixed choice), `benchmark` (each
shape's fastest candidate, timed as `backends.cudnn.benchmark` does; the kernels it chose are
printed) or `FAMILY:N[:WGRAD_N]`, one kernel family (mma, wgmma, wgmma_specialized) with
N-tile widths for every pass (the weight gradient's by default 128 for mma, 256 for the others),
or `tma:N:BLOCKS` / `tma_pingpong:N:1`, a TMA forward (BLOCKS a multiprocessor) beside the TMA
weight gradient with the same N (at least 128) and BLOCKS.
`--mma-tile BKxSTAGES` sets implicit_gemm.cu's k tile and stages.

    python scripts/tune_implicit_gemm.py [--batch 512] [--configs rule benchmark wgmma_specialized:256]
"""
import argparse

import numpy as np

import mytensor as mt
from mytensor.backend import get_backend
from mytensor.backend.cuda.implicit_gemm import ConvKernel

LAYERS = [  # (C, O, H = W) of ResNet-9's 3x3 convolutions on 32x32 images
    (8, 64, 32), (64, 128, 32), (128, 128, 16), (128, 256, 16), (256, 512, 8), (512, 512, 4)]


def timed(cupy, fn, rounds=7, calls=8):
    """Milliseconds of one fn(), by CUDA events: the median over `rounds` of `calls` calls in a
    row after a warm-up, so that the GPU's queue stays full and the host's time to launch each
    call (Python, the tensor maps, argument packing) is not counted as the kernel's."""
    fn()
    times = []
    for _ in range(rounds):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(calls):
            fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / calls)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--configs", nargs="+", default=["rule", "benchmark", "mma:128", "wgmma:256",
                                                    "wgmma_specialized:256"])
    p.add_argument("--mma-tile", default="64x3")
    args = p.parse_args()
    import cupy
    import torch
    backend = get_backend("cuda")
    backend.implicit_gemm_tile = tuple(int(v) for v in args.mma_tile.split("x"))
    dt = mt.bfloat16.np
    rng = cupy.random.default_rng(0)
    rows = []
    for c, o, h in LAYERS:
        n = args.batch
        flop = 2 * n * h * h * o * c * 9 / 1e9  # GFLOP of one pass
        x = rng.standard_normal((n, h, h, c), dtype=np.float32).astype(dt)
        w = rng.standard_normal((o, 3, 3, c), dtype=np.float32).astype(dt)
        g = rng.standard_normal((n, h, h, o), dtype=np.float32).astype(dt)
        wf = cupy.ascontiguousarray(w[:, ::-1, ::-1, :].transpose(3, 1, 2, 0))
        row = {"layer": f"{c}->{o} @{h}"}
        for tile in args.configs:
            backend.conv_kernels = kernels_of(tile)
            mt.backends.cudnn.benchmark = tile == "benchmark"
            row[f"fprop {tile}"] = timed(cupy, lambda: backend.conv2d_nhwc(x, w, None, (1, 1), (1, 1), (1, 1)))
            row[f"dgrad {tile}"] = timed(cupy, lambda: backend.conv2d_nhwc(g, wf, None, (1, 1), (1, 1), (1, 1)))
            row[f"wgrad {tile}"] = timed(cupy, lambda: backend.conv2d_nhwc_weight_grad(
                x, g, (3, 3), (1, 1), (1, 1), (1, 1), False))
        tx = torch.randn(n, c, h, h, device="cuda", dtype=torch.bfloat16).to(memory_format=torch.channels_last)
        tw = torch.randn(o, c, 3, 3, device="cuda", dtype=torch.bfloat16).to(memory_format=torch.channels_last)
        tg = torch.randn(n, o, h, h, device="cuda", dtype=torch.bfloat16).to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
        conv_bwd = torch.ops.aten.convolution_backward
        row["fprop cudnn"] = timed(cupy, lambda: torch.nn.functional.conv2d(tx, tw, padding=1))
        row["dgrad cudnn"] = timed(cupy, lambda: conv_bwd(tg, tx, tw, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1,
                                                          (True, False, False)))
        row["wgrad cudnn"] = timed(cupy, lambda: conv_bwd(tg, tx, tw, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1,
                                                          (False, True, False)))
        rows.append((flop, row))
    mt.backends.cudnn.benchmark = False
    names = [k for k in rows[0][1] if k != "layer"]
    print(f"batch {args.batch}, bf16; ms (TFLOP/s)")
    print(f"{'layer':<16}" + "".join(f"{k:>18}" for k in names))
    totals = dict.fromkeys(names, 0.0)
    for flop, row in rows:
        print(f"{row['layer']:<16}" + "".join(f"{row[k]:>9.3f} ({flop / row[k]:>4.0f})" for k in names))
        for k in names:
            totals[k] += row[k]
    print(f"{'all (ms)':<16}" + "".join(f"{totals[k]:>18.3f}" for k in names))
    for key, kernel in backend._conv_choices.items():
        blocks = key[0] == "wgrad" or kernel.family == "tma"
        split = f", {kernel.blocks_per_sm} blocks a multiprocessor" if blocks else ""
        print(f"benchmark chose {kernel.family}:{kernel.n_tile}{split} for {key[0]} of {key[2]} x {key[3]}")


def kernels_of(config):
    """The backend's `conv_kernels` for a configuration: none for `rule` and `benchmark`."""
    if config in ("rule", "benchmark"):
        return {}
    family, *tiles = config.split(":")
    if family.startswith("tma"):
        n, blocks = int(tiles[0]), int(tiles[1])
        return {"fprop": ConvKernel(family, n, blocks), "wgrad": ConvKernel("tma", max(n, 128), blocks)}
    wgrad = int(tiles[1]) if len(tiles) > 1 else 128 if family == "mma" else 256
    return {"fprop": ConvKernel(family, int(tiles[0])), "wgrad": ConvKernel(family, wgrad)}


if __name__ == "__main__":
    main()
