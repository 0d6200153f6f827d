"""`torch.backends.cudnn`: mytensor does not use cuDNN, so these flags change nothing.

Convolutions run as im2col + our own cuBLAS GEMM, whose algorithm does not depend
on earlier calls, so `benchmark` has nothing to tune. `deterministic` is accepted
and ignored: the convolution kernels are atomic-free and repeat exactly, while the
max-pooling backward adds overlapping windows' gradients with atomics (their order,
and so the last bits of the sum, may vary from run to run on a GPU). `enabled` is
accepted and ignored.
"""
benchmark = False
deterministic = False
enabled = True


def is_available():
    """False: the cuDNN library is not used (nothing else needs to change)."""
    return False


def version():
    return None
