"""Activations and softmax against torch.nn.functional, and dropout's statistics."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import mytensor as mt
import mytensor.nn.functional as F
from test_functional_common import (DEVICES, DTYPES, Arg, compare, gradcheck, rng,  # noqa: F401
                                    to_np, torch_single_thread)

ELEMENTWISE = {
    "relu": (F.relu, TF.relu, {}),
    "leaky_relu": (F.leaky_relu, TF.leaky_relu, {}),
    "leaky_relu_0.2": (F.leaky_relu, TF.leaky_relu, {"negative_slope": 0.2}),
    "gelu": (F.gelu, TF.gelu, {}),
    "gelu_tanh": (F.gelu, TF.gelu, {"approximate": "tanh"}),
    "silu": (F.silu, TF.silu, {}),
    "sigmoid": (F.sigmoid, torch.sigmoid, {}),
    "tanh": (F.tanh, torch.tanh, {}),
}
SHAPES = [(1,), (7, 5), (2, 3, 4, 5)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_activation_matches_torch(name, shape, dtype, device, rng):
    ours, theirs, kwargs = ELEMENTWISE[name]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    compare(ours, theirs, [Arg(x, noncontig=len(shape) > 1)], dtype, device, rng, kwargs=kwargs, what=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_activation_at_large_inputs(name, device, rng):
    """No overflow or nan where exp(-x) overflows (sigmoid, silu at -1000)."""
    ours, theirs, kwargs = ELEMENTWISE[name]
    x = np.array([-1000.0, -40.0, -1.5, 1.5, 40.0, 1000.0])
    compare(ours, theirs, [Arg(x)], "float64", device, rng, kwargs=kwargs, what=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_activation_gradcheck(name, device, rng):
    ours, _, kwargs = ELEMENTWISE[name]
    x = rng.standard_normal((3, 4))
    x[np.abs(x) < 1e-3] = 0.5  # keep relu's kink away from the finite differences
    gradcheck(ours, x, device=device, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,dim", [((5,), 0), ((1, 7), 1), ((4, 6), 0), ((4, 6), -1), ((2, 3, 4, 5), 1),
                                       ((3, 4, 5), -1)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_matches_torch(shape, dim, log, dtype, device, rng):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    ours, theirs = (F.log_softmax, TF.log_softmax) if log else (F.softmax, TF.softmax)
    compare(ours, theirs, [Arg(x, noncontig=len(shape) > 2), dim], dtype, device, rng,
            what=f"{'log_' if log else ''}softmax {shape} dim={dim}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_is_stable_for_huge_logits(log, device, rng):
    x = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4 + 1, -1e4 + 2], [5e3, 5e3, 5e3]])
    ours, theirs = (F.log_softmax, TF.log_softmax) if log else (F.softmax, TF.softmax)
    out = compare(ours, theirs, [Arg(x)], "float64", device, rng, kwargs={"dim": 1}, what="huge logits")
    assert np.isfinite(to_np(out)).all()


@pytest.mark.parametrize("device", DEVICES)
def test_softmax_gradcheck(device, rng):
    gradcheck(F.softmax, rng.standard_normal((3, 4)), 1, device=device)
    gradcheck(F.log_softmax, rng.standard_normal((2, 3, 4)), 0, device=device)
    gradcheck(F.log_softmax, rng.standard_normal((2, 3, 4)), -1, device=device)


def test_softmax_dim_is_checked():
    with pytest.raises(IndexError, match="dimension out of range"):
        F.softmax(mt.randn(2, 3), 2)
    with pytest.raises(TypeError, match="pass dim"):
        F.log_softmax(mt.randn(2, 3))


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(mt.randn(3), approximate="erf")


# ------------------------------------------------------------------ dropout
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics(p, device, rng):
    """Each element is dropped with probability p, independently; the rest are
    scaled by 1/(1-p), so the mean is kept."""
    n = 200_000
    x = mt.tensor(rng.random(n) + 1.0, device=device)
    out = F.dropout(x, p)
    dropped = to_np(out) == 0
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(dropped.mean() - p) < 5 * sigma
    kept = ~dropped
    np.testing.assert_allclose(to_np(out)[kept], to_np(x)[kept] / (1 - p), rtol=1e-6)
    # no correlation between neighbours: pairs are both dropped with probability p^2
    both = (dropped[:-1] & dropped[1:]).mean()
    assert abs(both - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / n)
    assert abs(to_np(out).mean() - to_np(x).mean()) < 0.05
    assert not np.array_equal(to_np(F.dropout(x, p)) == 0, dropped)  # a new mask every call


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_backward_uses_the_forward_mask(dtype, device, rng):
    x = mt.tensor(rng.random((64, 33)).astype(dtype) + 0.5, device=device, requires_grad=True)
    out = F.dropout(x, 0.3)
    g = rng.standard_normal((64, 33)).astype(dtype)
    out.backward(mt.tensor(g, device=device))
    mask = to_np(out) / to_np(x)  # 0 or 1/(1-p) per element
    np.testing.assert_allclose(to_np(x.grad), g * mask, rtol=1e-6)
    assert out.dtype is getattr(mt, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_dropout_gradcheck_with_a_fixed_mask(device, rng):
    def fixed_mask_dropout(x):
        mt.manual_seed(1234)  # the same mask in every evaluation that gradcheck makes
        return F.dropout(x, 0.4)
    gradcheck(fixed_mask_dropout, rng.standard_normal((4, 5)), device=device)


def test_dropout_identity_cases_and_errors():
    x = mt.randn(3, 4, requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    out = F.dropout(x, 1.0)
    assert not to_np(out).any()
    out.sum().backward()
    assert not to_np(x.grad).any()
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 1.5)
