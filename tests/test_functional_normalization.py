"""F.batch_norm against torch.nn.functional.batch_norm: output, gradients of input,
weight and bias, and the running statistics it updates in place."""
import pytest
import torch
import torch.nn.functional as TF

import mytensor as mt
import mytensor.nn.functional as F
from test_functional_common import (DEVICES, DTYPES, Arg, assert_close, compare, gradcheck, rng,  # noqa: F401
                                    to_np, torch_single_thread)

SHAPES = [(4, 3), (1, 5, 3, 4), (3, 6, 5, 5), (2, 3, 7), (5, 1, 2, 3)]


def _stats(rng, c, dtype):
    return rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_torch(shape, training, affine, dtype, device, rng):
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    mean, var = _stats(rng, c, dtype)
    weight = Arg(rng.standard_normal(c).astype(dtype)) if affine else None
    bias = Arg(rng.standard_normal(c).astype(dtype)) if affine else None
    ours_stats = [mt.tensor(mean, device=device), mt.tensor(var, device=device)]
    theirs_stats = [torch.tensor(mean), torch.tensor(var)]
    noncontig = len(shape) == 4 and shape[0] > 1
    compare(lambda x, w, b: F.batch_norm(x, *ours_stats, w, b, training, 0.2, 1e-4),
            lambda x, w, b: TF.batch_norm(x, *theirs_stats, w, b, training, 0.2, 1e-4),
            [Arg(x, noncontig=noncontig), weight, bias], dtype, device, rng, what=f"batch_norm {shape}")
    for ours, theirs, name in zip(ours_stats, theirs_stats, ("running_mean", "running_var")):
        assert_close(to_np(ours), theirs.numpy(), dtype, device, name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4, 3)])
def test_running_statistics_follow_torch_over_several_steps(shape, dtype, device, rng):
    """Training steps move the running mean and the (unbiased) running variance as in
    PyTorch; an eval step then uses them."""
    c = shape[1]
    ours_stats = [mt.zeros(c, dtype=dtype, device=device), mt.ones(c, dtype=dtype, device=device)]
    theirs_stats = [torch.zeros(c, dtype=getattr(torch, dtype)), torch.ones(c, dtype=getattr(torch, dtype))]
    weight, bias = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    versions = [t._version[0] for t in ours_stats]
    for step in range(4):
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(dtype)
        F.batch_norm(mt.tensor(x, device=device), *ours_stats, mt.tensor(weight, device=device),
                     mt.tensor(bias, device=device), training=True)
        TF.batch_norm(torch.tensor(x), *theirs_stats, torch.tensor(weight), torch.tensor(bias), training=True)
        for ours, theirs, name in zip(ours_stats, theirs_stats, ("running_mean", "running_var")):
            assert_close(to_np(ours), theirs.numpy(), dtype, device, f"{name} after step {step}")
    assert [t._version[0] for t in ours_stats] == [v + 4 for v in versions]  # in-place writes are counted
    x = rng.standard_normal(shape).astype(dtype)
    compare(lambda x: F.batch_norm(x, *ours_stats, training=False),
            lambda x: TF.batch_norm(x, *theirs_stats, training=False),
            [Arg(x)], dtype, device, rng, what="eval after training")


@pytest.mark.parametrize("device", DEVICES)
def test_batch_norm_without_running_statistics(device, rng):
    """training=True with no running statistics (track_running_stats=False)."""
    x = rng.standard_normal((4, 3, 2, 2))
    compare(lambda x: F.batch_norm(x, None, None, training=True),
            lambda x: TF.batch_norm(x, None, None, training=True), [Arg(x)], "float64", device, rng,
            what="no running stats")


@pytest.mark.parametrize("device", DEVICES)
def test_batch_norm_gradcheck(device, rng):
    x = rng.standard_normal((3, 2, 2, 3))
    weight, bias = rng.standard_normal(2), rng.standard_normal(2)
    gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), x, weight, bias, device=device)
    gradcheck(lambda x: F.batch_norm(x, None, None, training=True), rng.standard_normal((5, 3)), device=device)
    mean = mt.tensor(rng.standard_normal(2), device=device)
    var = mt.tensor(rng.random(2) + 0.5, device=device)
    gradcheck(lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=False), x, weight, bias, device=device)


def test_batch_norm_errors():
    x = mt.randn(4, 3, 2, 2)
    with pytest.raises(ValueError, match=r"weight of shape \(4,\) doesn't match input of shape \(4, 3, 2, 2\)"):
        F.batch_norm(x, None, None, mt.ones(4), training=True)
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3\)"):
        F.batch_norm(mt.randn(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match="needed when training=False"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*\(4,\)"):
        F.batch_norm(mt.randn(4), None, None, training=True)
