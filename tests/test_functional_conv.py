"""F.conv2d and F.linear against torch.nn.functional: forward and every gradient."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import mytensor as mt
import mytensor.nn.functional as F
from test_functional_common import DEVICES, DTYPES, Arg, compare, gradcheck, rng, torch_single_thread  # noqa: F401

# every kernel size, stride, padding, dilation and groups combination; channel counts
# that are not multiples of 4, odd and unequal H and W
CONV_GRID = list(itertools.product((1, 3, 5), (1, 2), (0, 1, 2), (1, 2), (1, 2)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,stride,padding,dilation,groups", CONV_GRID)
def test_conv2d_matches_torch(k, stride, padding, dilation, groups, dtype, device, rng):
    case = CONV_GRID.index((k, stride, padding, dilation, groups))
    n = 1 if case % 3 == 0 else 3                    # batch 1 in a third of the cases
    c, o = (3, 5) if groups == 1 else (6, 6)
    h, w = 9, 11
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((o, c // groups, k, k)).astype(dtype)
    bias = rng.standard_normal(o).astype(dtype)
    compare(F.conv2d, TF.conv2d,
            [Arg(x, noncontig=case % 2 == 1), Arg(weight), Arg(bias), stride, padding, dilation, groups],
            dtype, device, rng, what=f"conv2d case {case}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_rectangular_and_asymmetric_arguments(dtype, device, rng):
    x = rng.standard_normal((2, 4, 8, 7)).astype(dtype)
    weight = rng.standard_normal((6, 2, 3, 2)).astype(dtype)
    compare(F.conv2d, TF.conv2d, [Arg(x), Arg(weight), None, (2, 1), (1, 0), (1, 2), 2], dtype, device, rng,
            what="conv2d rectangular")


class _NhwcConvolutions:
    """The stride-1 `conv2d_nhwc(..., out=)` of the GPU backend, in NumPy: what the input gradient
    by sub-convolutions is built of."""
    xp = np
    ascontiguousarray = staticmethod(np.ascontiguousarray)

    @staticmethod
    def conv2d_nhwc(x, weight, bias, stride, padding, dilation, out):
        assert bias is None and stride == dilation == (1, 1)
        (n, h, w, _), (_, kh, kw, _), (oh, ow), (ph, pw) = x.shape, weight.shape, out.shape[1:3], padding
        padded = np.zeros((n, oh + kh, ow + kw, x.shape[3]))  # reads past the input see zeros
        rows, cols = min(h, oh + kh - ph), min(w, ow + kw - pw)
        padded[:, ph:ph + rows, pw:pw + cols] = x[:, :rows, :cols]
        out[...] = sum(padded[:, i:i + oh, j:j + ow] @ weight[:, i, j].T for i in range(kh) for j in range(kw))


@pytest.mark.parametrize("k,stride,padding", [(k, s, p) for k in (1, 2, 3, 4, 5) for s in (1, 2, 3) for p in range(k)])
def test_input_gradient_by_subconvolutions_matches_torch(k, stride, padding, rng):
    """dX as one stride-1 convolution of dY per residue of the input pixel modulo the stride
    (how the GPU computes it channels-last) equals PyTorch's input gradient; where no such
    decomposition exists (padding past a residue's taps) the plan says so."""
    from mytensor.nn.functional.conv import _input_grad_by_subconvolutions, _subconvolutions
    n, c, o = 2, 3, 4
    h, w = rng.integers(k, 12, size=2)
    x = torch.tensor(rng.standard_normal((n, c, h, w)), requires_grad=True)
    weight = rng.standard_normal((o, c, k, k))
    y = TF.conv2d(x, torch.tensor(weight), stride=stride, padding=padding)
    gy = rng.standard_normal(y.shape)
    y.backward(torch.tensor(gy))
    plan = _subconvolutions(weight.shape, (stride, stride), (padding, padding), (1, 1))
    if plan is None:
        assert any(last < r + padding for r in range(stride) for last in [k - 1 - (k - 1 - r - padding) % stride]
                   if last >= 0)
        return
    assert len(plan) == stride * stride
    gx = _input_grad_by_subconvolutions(_NhwcConvolutions, np, gy.transpose(0, 2, 3, 1), weight, x.shape,
                                        (stride, stride), plan)
    np.testing.assert_allclose(gx.transpose(0, 3, 1, 2), x.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_conv2d_without_bias_and_weight_only_gradient(device, rng):
    x = rng.standard_normal((2, 3, 6, 6))
    weight = rng.standard_normal((4, 3, 3, 3))
    compare(F.conv2d, TF.conv2d, [Arg(x, requires_grad=False), Arg(weight), None, 1, 1], "float64", device, rng,
            what="conv2d weight grad only")
    compare(F.conv2d, TF.conv2d, [Arg(x), Arg(weight, requires_grad=False)], "float64", device, rng,
            what="conv2d input grad only")


@pytest.mark.parametrize("device", DEVICES)
def test_conv2d_non_contiguous_weight(device, rng):
    x = rng.standard_normal((2, 3, 7, 7))
    weight = rng.standard_normal((4, 3, 3, 3))
    compare(F.conv2d, TF.conv2d, [Arg(x), Arg(weight, noncontig=True), None, 2, 1], "float64", device, rng,
            what="conv2d non-contiguous weight")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv2d_string_padding(padding, device, rng):
    x = rng.standard_normal((1, 2, 6, 5))
    weight = rng.standard_normal((3, 2, 3, 3))
    compare(F.conv2d, TF.conv2d, [Arg(x), Arg(weight)], "float64", device, rng,
            kwargs=dict(padding=padding, dilation=2 if padding == "same" else 1), what=f"padding={padding}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1), (2, 1, 2, 2)])
def test_conv2d_gradcheck(stride, padding, dilation, groups, device, rng):
    x = rng.standard_normal((2, 2, 5, 6))
    weight = rng.standard_normal((2, 2 // groups, 3, 3))
    bias = rng.standard_normal(2)
    gradcheck(F.conv2d, x, weight, bias, stride, padding, dilation, groups, device=device)


def test_conv2d_result_is_contiguous_and_keeps_dtype():
    out = F.conv2d(mt.randn(2, 3, 5, 5, dtype=mt.float32), mt.randn(4, 3, 3, 3, dtype=mt.float32))
    assert out.shape == (2, 4, 3, 3) and out.is_contiguous() and out.dtype is mt.float32


# ------------------------------------------------------------------ errors
def test_conv2d_rejects_input_that_is_not_4d():
    with pytest.raises(ValueError, match=r"4-D input.*3-D tensor of shape \(3, 5, 5\)"):
        F.conv2d(mt.randn(3, 5, 5), mt.randn(2, 3, 3, 3))


def test_conv2d_rejects_channel_mismatch():
    with pytest.raises(ValueError, match=r"\(1, 4, 5, 5\) has 4 channels.*\(2, 3, 3, 3\).*expects 3"):
        F.conv2d(mt.randn(1, 4, 5, 5), mt.randn(2, 3, 3, 3))


def test_conv2d_rejects_channels_not_divisible_by_groups():
    with pytest.raises(ValueError, match=r"\(1, 5, 6, 6\) has 5 channels.*not divisible by groups=2"):
        F.conv2d(mt.randn(1, 5, 6, 6), mt.randn(4, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"weight of shape \(3, 2, 3, 3\) has 3 output channels.*groups=2"):
        F.conv2d(mt.randn(1, 4, 6, 6), mt.randn(3, 2, 3, 3), groups=2)


def test_conv2d_rejects_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"kernel size 5x5.*\(2, 1, 5, 5\).*padded input size 4x4.*\(1, 1, 4, 4\)"):
        F.conv2d(mt.randn(1, 1, 4, 4), mt.randn(2, 1, 5, 5))
    with pytest.raises(ValueError, match=r"kernel size 5x5 .*dilation \(2, 2\)"):
        F.conv2d(mt.randn(1, 1, 4, 4), mt.randn(2, 1, 3, 3), dilation=2)


@pytest.mark.parametrize("stride", [0, -1, (1, 0)])
def test_conv2d_rejects_non_positive_stride(stride):
    with pytest.raises(ValueError, match="stride must be positive"):
        F.conv2d(mt.randn(1, 1, 4, 4), mt.randn(1, 1, 3, 3), stride=stride)


def test_conv2d_rejects_bad_bias_and_dtype():
    with pytest.raises(ValueError, match=r"bias of shape \(3,\).*weight of shape \(2, 1, 3, 3\)"):
        F.conv2d(mt.randn(1, 1, 4, 4), mt.randn(2, 1, 3, 3), mt.randn(3))
    with pytest.raises(TypeError, match="float64.*float32"):
        F.conv2d(mt.randn(1, 1, 4, 4, dtype=mt.float64), mt.randn(2, 1, 3, 3, dtype=mt.float32))


# ------------------------------------------------------------------ linear
LINEAR_SHAPES = [((1, 5), 3), ((4, 7), 1), ((2, 3, 5), 4), ((5,), 3), ((3, 1, 2, 6), 5)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,out_features", LINEAR_SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch(shape, out_features, with_bias, dtype, device, rng):
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((out_features, shape[-1])).astype(dtype)
    bias = Arg(rng.standard_normal(out_features).astype(dtype)) if with_bias else None
    compare(F.linear, TF.linear, [Arg(x, noncontig=len(shape) == 3), Arg(weight, noncontig=len(shape) == 2), bias],
            dtype, device, rng, what=f"linear {shape}")


@pytest.mark.parametrize("device", DEVICES)
def test_linear_gradcheck(device, rng):
    gradcheck(F.linear, rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2),
              device=device)
    gradcheck(F.linear, rng.standard_normal((2, 2, 3)), rng.standard_normal((2, 3)), device=device)


def test_linear_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"input of shape \(2, 3\).*weight of shape \(4, 5\) expects 5"):
        F.linear(mt.randn(2, 3), mt.randn(4, 5))
    with pytest.raises(ValueError, match=r"weight must be 2-D.*\(4,\)"):
        F.linear(mt.randn(2, 4), mt.randn(4))
    with pytest.raises(ValueError, match=r"bias of shape \(3,\)"):
        F.linear(mt.randn(2, 4), mt.randn(2, 4), mt.randn(3))


def test_linear_matches_torch_on_the_same_parameters_in_a_module():
    """nn.Linear calls F.linear: a quick check through the module path too."""
    from mytensor import nn
    torch.manual_seed(0)
    theirs = torch.nn.Linear(4, 3).double()
    ours = nn.Linear(4, 3).to(mt.float64)
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng().standard_normal((2, 4))
    np.testing.assert_allclose(ours(mt.tensor(x)).detach().numpy(), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("groups", [1, 2])
def test_parameter_gradients_are_c_contiguous(groups, device):
    """The fused optimizer kernels take C-contiguous gradients (others fall back to slower code)."""
    x = mt.randn(2, 4, 6, 6, device=device, requires_grad=True)
    w = mt.randn(6, 4 // groups, 3, 3, device=device, requires_grad=True)
    b = mt.randn(6, device=device, requires_grad=True)
    v = mt.randn(5, 6 * 4 * 4, device=device, requires_grad=True)
    F.linear(F.conv2d(x, w, b, groups=groups).flatten(1), v).sum().backward()
    for t in (x, w, b, v):
        assert t.grad.is_contiguous()
