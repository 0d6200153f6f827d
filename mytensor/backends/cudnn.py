"""`torch.backends.cudnn`: mytensor does not use cuDNN, but `benchmark` means what it means there.

`benchmark = True` makes the GPU's implicit-GEMM convolutions time their candidate kernels the
first time each shape runs and keep the fastest for later calls (backend/cuda/implicit_gemm.py);
off (the default, as in PyTorch), a fixed rule picks the kernel. The first call of a shape then
waits for the GPU, so run it once before capturing a CUDA graph (`mt.cuda.graphed` and `mytensor
train` do: their first steps run eagerly). `deterministic` is accepted and ignored: the
convolution kernels are atomic-free and repeat exactly for a given kernel choice, while the
max-pooling backward adds overlapping windows' gradients with atomics (their order, and so the
last bits of the sum, may vary from run to run on a GPU). `enabled` is accepted and ignored.
"""
import contextlib
import sys
import types

from ..backend.cuda.implicit_gemm import benchmarking, set_benchmark

deterministic = False
enabled = True


def is_available():
    """False: the cuDNN library is not used (nothing else needs to change)."""
    return False


def version():
    return None


@contextlib.contextmanager
def flags(enabled=False, benchmark=False, benchmark_limit=10, deterministic=False, allow_tf32=True):
    """`benchmark` for the block, then back to what it was (the other flags change nothing here)."""
    before = benchmarking()
    set_benchmark(benchmark)
    try:
        yield
    finally:
        set_benchmark(before)


class _Flags(types.ModuleType):
    """The module's class, so that assigning `benchmark` reaches the convolution kernels' switch."""

    @property
    def benchmark(self):
        return benchmarking()

    @benchmark.setter
    def benchmark(self, on):
        set_benchmark(on)


sys.modules[__name__].__class__ = _Flags
