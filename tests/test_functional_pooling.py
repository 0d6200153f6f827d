"""F.max_pool2d, F.avg_pool2d and F.adaptive_avg_pool2d against torch.nn.functional."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import mytensor as mt
import mytensor.nn.functional as F
from test_functional_common import (DEVICES, DTYPES, Arg, compare, gradcheck, rng,  # noqa: F401
                                    torch_single_thread, to_np)

# (kernel, stride, padding): overlapping and not, padding up to half the kernel
POOL_CASES = [(1, None, 0), (2, None, 0), (2, 1, 1), (3, None, 1), (3, 2, 0), (3, 2, 1), (3, 1, 1), (2, 2, 1),
              ((3, 2), (2, 1), (1, 0))]
SHAPES = [(1, 3, 7, 9), (2, 5, 8, 8), (3, 1, 5, 6)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
def test_max_pool2d_matches_torch(kernel, stride, padding, dtype, device, rng):
    case = POOL_CASES.index((kernel, stride, padding))
    x = rng.standard_normal(SHAPES[case % 3]).astype(dtype)
    compare(F.max_pool2d, TF.max_pool2d, [Arg(x, noncontig=case % 2 == 0), kernel, stride, padding], dtype, device,
            rng, what=f"max_pool2d {kernel} {stride} {padding}")


@pytest.mark.parametrize("device", DEVICES)
def test_max_pool2d_returns_torch_indices(device, rng):
    x = rng.standard_normal((2, 3, 7, 6))
    out, idx = F.max_pool2d(mt.tensor(x, device=device), 3, 2, 1, return_indices=True)
    t_out, t_idx = TF.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    assert idx.dtype is mt.int64
    np.testing.assert_array_equal(to_np(idx), t_idx.numpy())
    np.testing.assert_array_equal(to_np(out), t_out.numpy())


@pytest.mark.parametrize("device", DEVICES)
def test_max_pool2d_gradient_goes_to_the_maximum_even_with_overlap(device, rng):
    """All nine overlapping 3x3 windows of a 5x5 plane share the centre maximum: it gets all nine gradients."""
    x = -rng.random((1, 1, 5, 5))
    x[0, 0, 2, 2] = 10.0
    x = mt.tensor(x, device=device, requires_grad=True)
    F.max_pool2d(x, 3, 1).sum().backward()
    expected = np.zeros((5, 5))
    expected[2, 2] = 9
    np.testing.assert_array_equal(to_np(x.grad)[0, 0], expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_matches_torch(kernel, stride, padding, count_include_pad, dtype, device, rng):
    case = POOL_CASES.index((kernel, stride, padding))
    x = rng.standard_normal(SHAPES[(case + 1) % 3]).astype(dtype)
    compare(F.avg_pool2d, TF.avg_pool2d, [Arg(x, noncontig=case % 2 == 1), kernel, stride, padding], dtype, device,
            rng, kwargs=dict(count_include_pad=count_include_pad), what=f"avg_pool2d {kernel} {stride} {padding}")


@pytest.mark.parametrize("device", DEVICES)
def test_avg_pool2d_divisor_override(device, rng):
    x = rng.standard_normal((2, 3, 6, 7))
    compare(F.avg_pool2d, TF.avg_pool2d, [Arg(x), 3, 2, 1], "float64", device, rng,
            kwargs=dict(divisor_override=5), what="divisor_override")


# output sizes: divisible (a plain average pooling), not divisible (overlapping
# bins), None (keep), larger than the input, and global (1, 1)
ADAPTIVE_CASES = [((2, 3, 8, 6), (4, 3)), ((1, 3, 7, 9), 3), ((2, 2, 7, 9), (5, 4)), ((2, 3, 7, 5), (None, 2)),
                  ((1, 2, 5, 3), (7, 4)), ((3, 5, 6, 7), 1), ((2, 1, 10, 10), (3, 7))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,output_size", ADAPTIVE_CASES)
def test_adaptive_avg_pool2d_matches_torch(shape, output_size, dtype, device, rng):
    case = ADAPTIVE_CASES.index((shape, output_size))
    x = rng.standard_normal(shape).astype(dtype)
    compare(F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, [Arg(x, noncontig=case % 2 == 1), output_size], dtype,
            device, rng, what=f"adaptive_avg_pool2d {shape} -> {output_size}")


@pytest.mark.parametrize("device", DEVICES)
def test_pooling_gradcheck(device, rng):
    x = rng.standard_normal((2, 2, 5, 6))
    gradcheck(F.max_pool2d, x, 3, 2, 1, device=device)
    gradcheck(F.max_pool2d, x, 2, device=device)
    gradcheck(F.avg_pool2d, x, 3, 2, 1, device=device)
    gradcheck(F.avg_pool2d, x, 3, 1, 1, device=device, count_include_pad=False)
    gradcheck(F.adaptive_avg_pool2d, x, (3, 4), device=device)
    gradcheck(F.adaptive_avg_pool2d, x, 1, device=device)


def test_pooling_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"4-D input.*3-D tensor of shape \(2, 5, 5\)"):
        F.max_pool2d(mt.randn(2, 5, 5), 2)
    with pytest.raises(ValueError, match=r"kernel_size \(5, 5\).*padded input size 4x4.*\(1, 1, 4, 4\)"):
        F.avg_pool2d(mt.randn(1, 1, 4, 4), 5)
    with pytest.raises(ValueError, match="at most half of kernel_size"):
        F.max_pool2d(mt.randn(1, 1, 6, 6), 2, padding=2)
    with pytest.raises(ValueError, match="stride must be positive"):
        F.max_pool2d(mt.randn(1, 1, 6, 6), 2, stride=0)
    with pytest.raises(ValueError, match="output_size must be positive"):
        F.adaptive_avg_pool2d(mt.randn(1, 1, 6, 6), 0)


@pytest.mark.parametrize("kernel,stride,padding", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)),
                                                   ((3, 2), (1, 2), (1, 0))])
def test_max_pool_winner_is_the_first_maximum_and_a_nan_wins(kernel, stride, padding):
    """Ties (values drawn from a few levels), NaNs and padding against a loop over the windows:
    the first maximum in row-major window order wins, a NaN over any number, and its index is
    h * W + w of the unpadded input (what max_pool2d_backward scatters to)."""
    from mytensor.backend import get_backend
    rng = np.random.default_rng()
    x = rng.integers(-2, 3, (2, 3, 7, 6)).astype(np.float64)
    x[rng.random(x.shape) < 0.05] = np.nan
    out, arg = get_backend("cpu").max_pool2d(x, kernel, stride, padding)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    for n, ch, oy, ox in np.ndindex(out.shape):
        best, where = None, None
        for i in range(kh):
            for j in range(kw):
                h, w = oy * sh - ph + i, ox * sw - pw + j
                v = x[n, ch, h, w] if 0 <= h < 7 and 0 <= w < 6 else -np.inf
                if best is None or v > best or (np.isnan(v) and not np.isnan(best)):
                    best, where = v, h * 6 + w
        got = out[n, ch, oy, ox]
        assert arg[n, ch, oy, ox] == where and (got == best or (np.isnan(best) and np.isnan(got)))
