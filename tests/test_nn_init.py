"""nn.init and the default initialisation of layers, against PyTorch's formulas and statistics."""
import math

import numpy as np
import pytest
import torch

import mytensor as mt
from mytensor import nn
from mytensor.nn import init

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])


def values(t):
    return t.detach().cpu().numpy().ravel()


@pytest.mark.parametrize("name,param", [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                        ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                                        ("leaky_relu", math.sqrt(5)), ("selu", None)])
def test_calculate_gain_matches_torch(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param), rel=1e-15)


def test_calculate_gain_rejects_unknown():
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swishy")


@pytest.mark.parametrize("shape", [(5, 3), (8, 4, 3, 3), (2, 6, 5)])
def test_fan_in_and_fan_out_match_torch(shape):
    assert init._calculate_fan_in_and_fan_out(mt.zeros(shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))


def test_fan_needs_two_dims():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(mt.zeros(4))


@pytest.mark.parametrize("device", DEVICES)
def test_distributions(device):
    mt.manual_seed(0)
    w = mt.empty(400, 250, device=device)  # fan_in 250, fan_out 400
    init.uniform_(w, -2, 3)
    v = values(w)
    assert v.min() >= -2 and v.max() < 3 and v.mean() == pytest.approx(0.5, abs=0.02)
    init.normal_(w, 1.0, 0.5)
    assert values(w).mean() == pytest.approx(1.0, abs=0.01) and values(w).std() == pytest.approx(0.5, rel=0.01)
    init.constant_(w, 0.25)
    assert (values(w) == 0.25).all()
    init.zeros_(w)
    assert not values(w).any()
    init.ones_(w)
    assert (values(w) == 1).all()

    init.xavier_uniform_(w, gain=2.0)
    bound = 2.0 * math.sqrt(6.0 / (250 + 400))
    assert np.abs(values(w)).max() <= bound and np.abs(values(w)).max() > 0.99 * bound
    init.xavier_normal_(w)
    assert values(w).std() == pytest.approx(math.sqrt(2.0 / 650), rel=0.02)

    init.kaiming_uniform_(w, nonlinearity="relu")
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 250)
    assert np.abs(values(w)).max() <= bound and values(w).std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert values(w).std() == pytest.approx(math.sqrt(2.0 / 400), rel=0.02)
    init.kaiming_normal_(w, a=0.2, mode="fan_in")  # leaky_relu with slope 0.2
    assert values(w).std() == pytest.approx(math.sqrt(2.0 / (1 + 0.04)) / math.sqrt(250), rel=0.02)
    assert abs(values(w).mean()) < 0.002


def test_init_runs_without_recording_and_keeps_the_leaf():
    p = nn.Parameter(mt.zeros(30, 20))
    for fn in (init.kaiming_uniform_, init.kaiming_normal_, init.xavier_uniform_, init.xavier_normal_,
               init.zeros_, init.ones_):
        assert fn(p) is p
        assert p.is_leaf and p.requires_grad and p.grad_fn is None


def test_manual_seed_makes_init_reproducible():
    mt.manual_seed(123)
    a = nn.Linear(20, 10).weight.detach().numpy()
    mt.manual_seed(123)
    b = nn.Linear(20, 10).weight.detach().numpy()
    np.testing.assert_array_equal(a, b)


def test_zero_element_tensors_are_left_alone():
    with pytest.warns(UserWarning, match="zero-element"):
        init.kaiming_uniform_(mt.zeros(0, 3))


@pytest.mark.parametrize("make", [
    lambda lib: lib.Linear(300, 200),
    lambda lib: lib.Conv2d(16, 64, 3),
    lambda lib: lib.Conv2d(8, 32, (5, 3), groups=4),
], ids=["linear", "conv2d", "conv2d_groups"])
def test_default_layer_init_matches_torch_statistics(make):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, as torch's reset_parameters."""
    mt.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = make(nn), make(torch.nn)
    for name in ("weight", "bias"):
        a, b = values(getattr(ours, name)), getattr(theirs, name).detach().numpy().ravel()
        assert a.shape == b.shape
        fan_in = int(np.prod(theirs.weight.shape[1:]))
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(a).max() <= bound and np.abs(b).max() <= bound
        if a.size > 1000:  # enough samples for the moments to mean something
            assert a.std() == pytest.approx(b.std(), rel=0.05)
            assert a.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)
            assert abs(a.mean()) < 0.05 * bound


def test_batchnorm_starts_as_identity_with_fresh_statistics():
    bn = nn.BatchNorm2d(5)
    assert (values(bn.weight) == 1).all() and not values(bn.bias).any()
    assert not values(bn.running_mean).any() and (values(bn.running_var) == 1).all()
    assert bn.num_batches_tracked.item() == 0 and bn.num_batches_tracked.dtype == mt.int64
