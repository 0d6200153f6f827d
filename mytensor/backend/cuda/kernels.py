"""Kernel loading: which kernels each .cu file of `backend/kernels/` holds, for which element
types, the NVRTC options it needs, and the modules compiled from it (once a process; CuPy keeps
the binaries in its on-disk cache)."""
import os
import re

import numpy as np

from ..array_backend import LOW_PRECISION

KERNEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")

# The kernels of each .cu file (templates over the element type) and extra
# NVRTC options. optim.cu turns off multiply-add contraction so its rounding
# matches the generic update step by step. `_SIXTEEN_BIT` kernels also exist
# for the 2-byte types.
_KERNEL_FILES = {
    "activation.cu": ("relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
                      "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
                      "gelu_forward", "gelu_backward"),
    "arithmetic.cu": ("add_packed",),
    "conv.cu": ("im2col", "col2im", "swap_leading"),
    "implicit_gemm.cu": ("conv_fprop", "conv_wgrad", "conv_wgrad_sum"),
    "implicit_gemm_wgmma.cu": ("conv_fprop_wgmma", "conv_fprop_wgmma_specialized", "conv_wgrad_wgmma",
                               "conv_wgrad_wgmma_specialized"),
    "conv_tma.cu": ("conv_fprop_tma", "conv_fprop_tma_pingpong", "conv_wgrad_tma"),
    "pool.cu": ("max_pool2d_forward", "max_pool2d_backward", "max_pool2d_nhwc_forward", "max_pool2d_nhwc_backward",
                "max_pool2d_nhwc_backward_disjoint", "avg_pool2d_forward", "avg_pool2d_backward"),
    "softmax_ce.cu": ("softmax_xent_forward", "xent_reduce", "softmax_xent_backward"),
    "batch_norm.cu": ("bn_partial_sums", "bn_partial_sums_rows", "bn_forward_finish", "bn_scale_shift",
                      "bn_scale_shift_rows", "bn_backward_partial_sums", "bn_backward_partial_sums_rows",
                      "bn_backward_finish", "bn_backward_dx", "bn_backward_dx_rows"),
    "dropout.cu": ("dropout_mask",),
    "optim.cu": ("set_scalars", "sgd_multi_tensor", "adam_multi_tensor", "muon_momentum", "muon_scale",
                 "muon_apply"),
    "augment.cu": ("augment_images",),
    "layout.cu": ("transpose_batched",),
}
_SIXTEEN_BIT_ONLY = frozenset(_KERNEL_FILES["implicit_gemm.cu"]  # tensor-core kernels: no float/double
                              + _KERNEL_FILES["implicit_gemm_wgmma.cu"] + _KERNEL_FILES["conv_tma.cu"])
_SIXTEEN_BIT = frozenset(_KERNEL_FILES["arithmetic.cu"] + _KERNEL_FILES["conv.cu"] + _KERNEL_FILES["pool.cu"]
                         + _KERNEL_FILES["layout.cu"]
                         + _KERNEL_FILES["batch_norm.cu"] + _KERNEL_FILES["augment.cu"] + _KERNEL_FILES["dropout.cu"]
                         + ("relu_forward", "relu_backward", "gelu_forward", "gelu_backward")) | _SIXTEEN_BIT_ONLY
# wgmma exists only on sm_90a, Hopper's own target, which NVRTC builds for when asked by name
_EXTRA_OPTIONS = {"optim.cu": ("--fmad=false",), "implicit_gemm_wgmma.cu": ("-arch=sm_90a",),
                  "conv_tma.cu": ("-arch=sm_90a",)}
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double",
           LOW_PRECISION[0]: "half_t", LOW_PRECISION[1]: "bf16_t"}  # (names from common.cuh)
_WIDE = (np.dtype(np.float32), np.dtype(np.float64))
_INCLUDE = re.compile(r'^#include "(\w+\.cuh)"$', re.M)


def _read_kernel_file(name):
    """A file of the kernels folder. Its headers are pasted in where it includes them, since
    CuPy's compile cache keys on the code alone."""
    with open(os.path.join(KERNEL_DIR, name)) as f:
        return f.read()


class _KernelModules:
    """Loads each .cu file once (per process) and hands out its kernels by name."""

    def __init__(self, cupy):
        self.cupy = cupy
        self.modules = {}
        self.functions = {}

    def module(self, filename, defines=()):
        """The compiled `filename`; `defines` (NVRTC -D options) make variants of it."""
        mod = self.modules.get((filename, defines))
        if mod is None:
            code = _INCLUDE.sub(lambda m: _read_kernel_file(m.group(1)), _read_kernel_file(filename))
            names = tuple(f"{k}<{t}>" for k in _KERNEL_FILES[filename] for t in _CTYPES.values()
                          if (k in _SIXTEEN_BIT if t in ("half_t", "bf16_t") else k not in _SIXTEEN_BIT_ONLY))
            options = ("-std=c++17",) + _EXTRA_OPTIONS.get(filename, ()) + defines
            mod = self.cupy.RawModule(code=code, options=options, name_expressions=names)
            self.modules[(filename, defines)] = mod
        return mod

    def get(self, filename, kernel, dtype, defines=()):
        key = (self.cupy.cuda.runtime.getDevice(), filename, kernel, dtype, defines)
        fn = self.functions.get(key)
        if fn is None:
            fn = self.module(filename, defines).get_function(f"{kernel}<{_CTYPES[dtype]}>")
            self.functions[key] = fn
        return fn


_modules = None


def _kernel_modules(cupy):
    global _modules
    if _modules is None:
        _modules = _KernelModules(cupy)
    return _modules
