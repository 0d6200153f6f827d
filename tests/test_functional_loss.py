"""Losses against torch.nn.functional: every reduction, class weights, ignore_index,
label smoothing, class-probability targets, and their gradients."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import mytensor as mt
import mytensor.nn.functional as F
from test_functional_common import (DEVICES, DTYPES, Arg, compare, gradcheck, rng,  # noqa: F401
                                    to_np, torch_single_thread)

REDUCTIONS = ["mean", "sum", "none"]
# input shapes: (N, C), batch 1, a single class, (N, C, d1), (N, C, d1, d2), unbatched (C,)
CE_SHAPES = [(5, 3), (1, 10), (4, 1), (3, 4, 5), (2, 3, 2, 3), (6,)]


def class_targets(rng, shape, ignore_index=None):
    c = shape[1] if len(shape) > 1 else shape[0]
    t_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    t = rng.integers(0, c, t_shape)
    if ignore_index is not None and t.size > 1:
        t.reshape(-1)[:: 2] = ignore_index  # every other target ignored (never all of them: see below)
    return t


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
def test_cross_entropy_class_indices(shape, reduction, label_smoothing, dtype, device, rng):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    compare(F.cross_entropy, TF.cross_entropy, [Arg(x, noncontig=len(shape) == 3), Arg(class_targets(rng, shape))],
            dtype, device, rng, kwargs=dict(reduction=reduction, label_smoothing=label_smoothing),
            what=f"cross_entropy {shape}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 4), (3, 5, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_cross_entropy_weights_and_ignore_index(shape, reduction, label_smoothing, weighted, ignore_index, dtype,
                                                device, rng):
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    t = class_targets(rng, shape, ignore_index)
    weight = Arg(rng.random(shape[1]).astype(dtype) + 0.5, requires_grad=False) if weighted else None
    compare(F.cross_entropy, TF.cross_entropy, [Arg(x), Arg(t), weight], dtype, device, rng,
            kwargs=dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing),
            what="weighted cross_entropy")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3), (1, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_class_probabilities(shape, reduction, label_smoothing, weighted, dtype, device, rng):
    """Float targets of the input's shape; both input and target get gradients."""
    c = shape[1] if len(shape) > 1 else shape[0]
    x = rng.standard_normal(shape).astype(dtype)
    p = rng.random(shape)
    p = (p / p.sum(axis=1 if len(shape) > 1 else 0, keepdims=True)).astype(dtype)
    weight = Arg(rng.random(c).astype(dtype) + 0.5, requires_grad=False) if weighted else None
    compare(F.cross_entropy, TF.cross_entropy, [Arg(x), Arg(p), weight], dtype, device, rng,
            kwargs=dict(reduction=reduction, label_smoothing=label_smoothing), what="probability targets")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("weighted", [False, True])
def test_mean_of_all_ignored_targets_is_nan_with_zero_gradient_like_torch(loss, weighted, device, rng):
    x = rng.standard_normal((3, 4))
    t = np.full(3, -100)
    weight = Arg(rng.random(4) + 0.5, requires_grad=False) if weighted else None
    out = compare(getattr(F, loss), getattr(TF, loss), [Arg(x), Arg(t), weight], "float64", device, rng,
                  what="all ignored")
    assert np.isnan(to_np(out))


@pytest.mark.parametrize("device", DEVICES)
def test_cross_entropy_accepts_int32_targets(device, rng):
    x = rng.standard_normal((4, 3))
    t = rng.integers(0, 3, 4)
    ours = F.cross_entropy(mt.tensor(x, device=device), mt.tensor(t.astype(np.int32), device=device))
    np.testing.assert_allclose(to_np(ours), TF.cross_entropy(torch.tensor(x), torch.tensor(t)).numpy(), rtol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_cross_entropy_gradcheck(device, rng):
    x = rng.standard_normal((4, 3))
    t = np.array([0, 2, -100, 1])
    w = mt.tensor(rng.random(3) + 0.5, device=device)
    for kwargs in (dict(), dict(label_smoothing=0.2), dict(weight=w, label_smoothing=0.1),
                   dict(weight=w, reduction="sum"), dict(reduction="none")):
        gradcheck(F.cross_entropy, x, t, device=device, **kwargs)
    gradcheck(F.cross_entropy, rng.standard_normal((2, 3, 2)), rng.integers(0, 3, (2, 2)), device=device)
    probs = rng.random((4, 3))
    gradcheck(F.cross_entropy, x, probs / probs.sum(1, keepdims=True), device=device, label_smoothing=0.1)


# ------------------------------------------------------------------ nll
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3), (1, 6), (3, 4, 5), (4,)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_nll_loss_matches_torch(shape, reduction, weighted, ignore_index, dtype, device, rng):
    c = shape[1] if len(shape) > 1 else shape[0]
    logp = np.log(rng.random(shape) + 0.1).astype(dtype)
    weight = Arg(rng.random(c).astype(dtype) + 0.5, requires_grad=False) if weighted else None
    t = class_targets(rng, shape, ignore_index if len(shape) > 1 else None)
    compare(F.nll_loss, TF.nll_loss, [Arg(logp, noncontig=len(shape) == 2), Arg(t), weight], dtype, device, rng,
            kwargs=dict(ignore_index=ignore_index, reduction=reduction), what="nll_loss")


@pytest.mark.parametrize("device", DEVICES)
def test_nll_loss_gradcheck(device, rng):
    w = mt.tensor(rng.random(3) + 0.5, device=device)
    gradcheck(F.nll_loss, rng.standard_normal((4, 3)), np.array([0, 2, -100, 1]), device=device, weight=w)
    gradcheck(F.nll_loss, rng.standard_normal((2, 3, 4)), rng.integers(0, 3, (2, 4)), device=device,
              reduction="sum")


def test_nll_of_log_softmax_is_cross_entropy(rng):
    x, t = mt.tensor(rng.standard_normal((6, 5))), mt.tensor(rng.integers(0, 5, 6))
    np.testing.assert_allclose(to_np(F.nll_loss(F.log_softmax(x, 1), t)), to_np(F.cross_entropy(x, t)), rtol=1e-12)


# ------------------------------------------------------------------ mse
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (5, 3), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_mse_loss_matches_torch(shape, reduction, weighted, dtype, device, rng):
    x, y = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    weight = Arg(rng.random(shape).astype(dtype), requires_grad=False) if weighted else None
    compare(F.mse_loss, TF.mse_loss, [Arg(x, noncontig=len(shape) > 1), Arg(y)], dtype, device, rng,
            kwargs=dict(reduction=reduction, weight=weight.ours(device) if weighted else None),
            torch_kwargs=dict(reduction=reduction, weight=weight.theirs() if weighted else None), what="mse")


def test_mse_loss_warns_on_broadcasting_like_torch():
    with pytest.warns(UserWarning, match=r"target of shape \(4, 1\) differs from input of shape \(4,\)"):
        F.mse_loss(mt.randn(4), mt.randn(4, 1))


# ------------------------------------------------------------------ binary
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (6, 3), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy_matches_torch(shape, reduction, weighted, dtype, device, rng):
    x = rng.uniform(0.02, 0.98, shape).astype(dtype)
    t = rng.random(shape).astype(dtype)  # soft targets: the target gradient is not trivial
    weight = Arg(rng.random(shape[-1:]).astype(dtype), requires_grad=False) if weighted else None
    compare(F.binary_cross_entropy, TF.binary_cross_entropy, [Arg(x, noncontig=len(shape) > 1), Arg(t), weight],
            dtype, device, rng, kwargs=dict(reduction=reduction), what="bce")


@pytest.mark.parametrize("device", DEVICES)
def test_binary_cross_entropy_clamps_the_log_like_torch(device, rng):
    """At input 0 or 1 the log is clamped at -100: the loss is 100, not inf."""
    x = np.array([0.0, 1.0, 0.0, 1.0, 1e-50, 0.5])
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.3])
    out = compare(F.binary_cross_entropy, TF.binary_cross_entropy, [Arg(x), Arg(t)], "float64", device, rng,
                  kwargs=dict(reduction="none"), what="bce at 0 and 1")
    assert to_np(out)[0] == 100.0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (6, 3), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
def test_binary_cross_entropy_with_logits_matches_torch(shape, reduction, weighted, pos_weighted, dtype, device,
                                                        rng):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    t = rng.random(shape).astype(dtype)
    weight = Arg(rng.random(shape[-1:]).astype(dtype), requires_grad=False) if weighted else None
    # PyTorch doesn't differentiate pos_weight (we do: see the gradcheck below)
    pos_weight = Arg(rng.random(shape[-1:]).astype(dtype) * 3, requires_grad=False) if pos_weighted else None
    compare(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits,
            [Arg(x, noncontig=len(shape) > 1), Arg(t), weight], dtype, device, rng,
            kwargs=dict(reduction=reduction, pos_weight=pos_weight.ours(device) if pos_weighted else None),
            torch_kwargs=dict(reduction=reduction, pos_weight=pos_weight.theirs() if pos_weighted else None),
            what="bce with logits")


@pytest.mark.parametrize("device", DEVICES)
def test_binary_cross_entropy_with_logits_is_stable(device, rng):
    x = np.array([-1000.0, -50.0, -1.0, 0.0, 1.0, 50.0, 1000.0])
    t = np.array([1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 0.0])
    out = compare(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, [Arg(x), Arg(t)],
                  "float64", device, rng, kwargs=dict(reduction="none"), what="bce logits extremes")
    assert np.isfinite(to_np(out)).all()


@pytest.mark.parametrize("device", DEVICES)
def test_binary_losses_gradcheck(device, rng):
    x, t = rng.uniform(0.1, 0.9, (3, 4)), rng.random((3, 4))
    gradcheck(F.binary_cross_entropy, x, t, device=device)
    pw = rng.random(4) + 0.5
    gradcheck(F.binary_cross_entropy_with_logits, rng.standard_normal((3, 4)), t, device=device)
    gradcheck(lambda x, t, pw: F.binary_cross_entropy_with_logits(x, t, pos_weight=pw), rng.standard_normal((3, 4)),
              t, pw, device=device)
    gradcheck(F.mse_loss, rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), device=device)


# ------------------------------------------------------------------ errors
def test_cross_entropy_target_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"input of shape \(4, 3\) needs class-index targets of shape \(4,\), "
                                         r"got target of shape \(5,\)"):
        F.cross_entropy(mt.randn(4, 3), mt.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match=r"input of shape \(4, 3\), target of shape \(4, 2\)"):
        F.cross_entropy(mt.randn(4, 3), mt.rand(4, 2))
    with pytest.raises(TypeError, match="bool"):
        F.cross_entropy(mt.randn(4, 3), mt.tensor([True, False, True, False]))
    with pytest.raises(TypeError, match="float64.*float32"):
        F.cross_entropy(mt.randn(4, 3, dtype=mt.float64), mt.rand(4, 3, dtype=mt.float32))


def test_class_index_out_of_range_is_caught_on_cpu():
    with pytest.raises(IndexError, match=r"target 3 is out of bounds for 3 classes \(input shape \(2, 3\)"):
        F.cross_entropy(mt.randn(2, 3), mt.tensor([0, 3]))
    with pytest.raises(IndexError, match="target -1 is out of bounds"):
        F.nll_loss(mt.randn(2, 3), mt.tensor([-1, 0]))
    F.cross_entropy(mt.randn(2, 3), mt.tensor([0, -100]))  # ignore_index is not out of range


def test_other_loss_errors():
    with pytest.raises(ValueError, match=r"target of shape \(3, 1\), input of shape \(3,\)"):
        F.binary_cross_entropy(mt.rand(3), mt.rand(3, 1))
    with pytest.raises(ValueError, match=r"target of shape \(2,\), input of shape \(3,\)"):
        F.binary_cross_entropy_with_logits(mt.randn(3), mt.rand(2))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(mt.tensor([0.5, 1.5]), mt.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction must be"):
        F.mse_loss(mt.randn(3), mt.randn(3), reduction="avg")
    with pytest.raises(ValueError, match=r"weight of shape \(4,\) doesn't match input of shape \(2, 3\)"):
        F.cross_entropy(mt.randn(2, 3), mt.tensor([0, 1]), weight=mt.ones(4))
    with pytest.raises(TypeError, match="class indices"):
        F.nll_loss(mt.randn(2, 3), mt.rand(2, 3))


def test_legacy_size_average_and_reduce_flags(rng):
    x, t = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that the flags are deprecated
        for size_average, reduce in [(False, None), (None, False), (True, True)]:
            ours = F.cross_entropy(mt.tensor(x), mt.tensor(t), size_average=size_average, reduce=reduce)
            theirs = TF.cross_entropy(torch.tensor(x), torch.tensor(t), size_average=size_average, reduce=reduce)
            np.testing.assert_allclose(to_np(ours), theirs.numpy(), rtol=1e-10)
