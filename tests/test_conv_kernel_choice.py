"""The CUDA backend's choice and sizing of its implicit-GEMM convolution kernels: arithmetic on
shapes only, so it runs without a GPU (the kernels themselves are tested on one, in
test_channels_last.py)."""
import itertools

import pytest

from mytensor.backend.array_backend import conv_output_size
from mytensor.backend.cuda.implicit_gemm import ImplicitGemmConvolutions

MAX_SHARED_PER_BLOCK = 227 * 1024  # Hopper's opt-in limit of dynamic shared memory a block


class Hopper(ImplicitGemmConvolutions):
    use_wgmma = True
    compute_capability = (9, 0)


class Ampere(Hopper):
    use_wgmma = False
    compute_capability = (8, 0)


class NHWC:
    """An array's shape, all `_im2col_box` reads."""

    def __init__(self, shape):
        self.shape = shape


def walked(size, lower, upper, stride):
    """How many window origins an im2col map's box holds along one axis, as the CUDA driver
    documents it: from `lower` to size - 1 + `upper`, every `stride`-th."""
    return (size - 1 + upper - lower) // stride + 1


@pytest.mark.parametrize("h, w", [(32, 32), (16, 9), (7, 64), (1, 5)])
def test_im2col_box_walks_exactly_the_output_pixels(h, w):
    for k, s, p, d in itertools.product((1, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)):
        oh, ow = conv_output_size(h, k, s, p, d), conv_output_size(w, k, s, p, d)
        if min(oh, ow) < 1:
            continue
        lower, upper, strides = Hopper()._im2col_box(NHWC((2, h, w, 64)), (s, s), (p, p), (oh, ow))
        assert strides == (s, s) and lower == (-p, -p)
        assert walked(w, lower[0], upper[0], s) == ow and walked(h, lower[1], upper[1], s) == oh


def test_im2col_box_of_a_sub_grid_walks_the_grid_asked_for():
    """The input gradient's sub-convolutions write grids whose size is given, not computed."""
    for oh, ow in [(1, 1), (5, 8), (16, 16), (17, 3)]:
        lower, upper, _ = Hopper()._im2col_box(NHWC((4, 16, 16, 128)), (1, 1), (1, 0), (oh, ow))
        assert walked(16, lower[0], upper[0], 1) == ow and walked(16, lower[1], upper[1], 1) == oh


@pytest.mark.parametrize("backend, shape, stride, padding, why", [
    (Hopper(), (2, 8, 8, 96), (1, 1), (1, 1), "96 channels: a k tile would straddle two taps"),
    (Hopper(), (2, 8, 8, 3), (1, 1), (1, 1), "an RGB input"),
    (Hopper(), (2, 64, 64, 64), (9, 9), (0, 0), "a stride past the map's 8"),
    (Hopper(), (2, 8, 8, 64), (1, 1), (130, 130), "a box corner past the map's range"),
    (Ampere(), (2, 8, 8, 64), (1, 1), (1, 1), "no TMA before Hopper"),
])
def test_im2col_box_refuses_what_a_map_cannot_hold(backend, shape, stride, padding, why):
    h, w = shape[1:3]
    out = tuple(conv_output_size(n, 3, s, p, 1) for n, s, p in zip((h, w), stride, padding))
    assert backend._im2col_box(NHWC(shape), stride, padding, out) is None, why


@pytest.mark.parametrize("o", [8, 64, 72, 128, 200, 256, 512])
def test_every_candidate_fits_its_shared_memory(o):
    """Each kernel's stages fit a block's shared memory, and a tma kernel's stages leave room
    for the blocks a multiprocessor it is built for."""
    backend = Hopper()
    kernels = [("fprop", k) for k in backend._fprop_candidates(o, 9 * 64, True)]
    kernels += [("wgrad", k) for k in backend._wgrad_candidates(o, True)]
    assert any(k.family == "tma" for _, k in kernels)
    for pass_name, kernel in kernels:
        smem = backend._shared_bytes(kernel, pass_name)
        assert smem <= MAX_SHARED_PER_BLOCK, (pass_name, kernel, smem)
        if kernel.family.startswith("tma"):
            assert backend._stages(kernel, pass_name) >= 3, kernel
            assert kernel.blocks_per_sm * (smem + 1024) <= backend._SHARED_PER_SM, (pass_name, kernel, smem)
        if kernel.family == "tma_pingpong":  # a warpgroup holds a whole 128 x N tile's sums
            assert kernel.n_tile <= 128 and pass_name == "fprop", kernel


def test_tma_kernels_are_candidates_only_where_a_map_serves():
    backend = Hopper()
    assert not any(k.family.startswith("tma") for k in backend._fprop_candidates(128, 9 * 64, False))
    assert not any(k.family.startswith("tma") for k in backend._wgrad_candidates(128, False))
    assert backend._fprop_rule(128, 9 * 64, True).family == "tma"
    assert {k.family for k in Ampere()._fprop_candidates(128, 9 * 64, True)} == {"mma"}
