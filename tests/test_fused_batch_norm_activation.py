"""A BatchNorm followed by a ReLU or a GELU in nn.Sequential runs as one fused op
(F.batch_norm_relu, F.batch_norm_gelu): the same values and gradients as the two layers in
PyTorch, in training and evaluation, in both memory formats; hooks or an overridden forward
keep the layers apart."""
import numpy as np
import pytest
import torch

import mytensor as mt
import mytensor.nn as nn
import mytensor.nn.functional as F

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])


def host(t):
    return t.detach().cpu().numpy().astype(np.float64) if isinstance(t, mt.Tensor) else t.detach().double().numpy()


ACTIVATIONS = {"relu": (nn.ReLU, torch.nn.ReLU, {}), "gelu": (nn.GELU, torch.nn.GELU, {}),
               "gelu_tanh": (nn.GELU, torch.nn.GELU, {"approximate": "tanh"})}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_sequential_batch_norm_activation_as_in_torch(device, training, channels_last, activation):
    rng = np.random.default_rng()
    n, c, h, w = int(rng.integers(2, 5)), 16, int(rng.integers(3, 7)), int(rng.integers(3, 7))
    x = rng.standard_normal((n, c, h, w)) * 2 + 0.5
    gy = rng.standard_normal((n, c, h, w))
    ours_act, theirs_act, kwargs = ACTIVATIONS[activation]
    ours = nn.Sequential(nn.BatchNorm2d(c), ours_act(**kwargs)).double()
    theirs = torch.nn.Sequential(torch.nn.BatchNorm2d(c), theirs_act(**kwargs)).double()
    with torch.no_grad():
        theirs[0].weight.copy_(torch.tensor(rng.standard_normal(c)))
        theirs[0].bias.copy_(torch.tensor(rng.standard_normal(c)))
        theirs[0].running_mean.copy_(torch.tensor(rng.standard_normal(c)))
        theirs[0].running_var.copy_(torch.tensor(rng.random(c) + 0.5))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    ours.to(device).train(training), theirs.train(training)
    xs = mt.tensor(x, device=device)
    xs = (xs.to(memory_format=mt.channels_last) if channels_last else xs).requires_grad_()
    xt = torch.tensor(x, requires_grad=True)
    y, yt = ours(xs), theirs(xt)
    assert repr(y.grad_fn) == "<BatchNormBackward>"  # one op, not BatchNorm then the activation
    y.backward(mt.tensor(gy, device=device))
    yt.backward(torch.tensor(gy))
    for a, b in [(y, yt), (xs.grad, xt.grad), (ours[0].weight.grad, theirs[0].weight.grad),
                 (ours[0].bias.grad, theirs[0].bias.grad), (ours[0].running_mean, theirs[0].running_mean),
                 (ours[0].running_var, theirs[0].running_var)]:
        np.testing.assert_allclose(host(a), host(b), rtol=1e-9, atol=1e-10)


def test_hooks_and_overrides_keep_the_layers_apart():
    seen = []

    class Shifted(nn.BatchNorm2d):
        def forward(self, input):
            return super().forward(input) + 1

    x = mt.randn(2, 4, 3, 3)
    hooked = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU())
    hooked[1].register_forward_hook(lambda m, args, out: seen.append(out))
    assert repr(hooked(x).grad_fn) == "<ReluBackward>" and len(seen) == 1  # the ReLU ran as a module
    shifted = nn.Sequential(Shifted(4), nn.ReLU())
    expected = np.maximum(F.batch_norm(x, None, None, training=True).numpy() + 1, 0)
    np.testing.assert_allclose(host(shifted(x)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_batch_norm_activation_in_bfloat16(device, activation):
    """The fused kernels in 16 bits against the two separate ops (float32 statistics both ways)."""
    fused_op, separate = {"relu": (F.batch_norm_relu, F.relu), "gelu": (F.batch_norm_gelu, F.gelu)}[activation]
    rng = np.random.default_rng()
    x = mt.tensor(rng.standard_normal((8, 64, 6, 6)), device=device, dtype=mt.bfloat16)
    w, b = mt.randn(64, device=device), mt.randn(64, device=device)
    weights = mt.tensor(rng.integers(0, 7, (8, 64, 6, 6)), device=device, dtype=mt.float32)
    outs = []
    for fused in (True, False):
        for fmt in (mt.contiguous_format, mt.channels_last):
            xx = x.to(memory_format=fmt).detach().requires_grad_()
            ww, bb = w.detach().requires_grad_(), b.detach().requires_grad_()
            y = fused_op(xx, None, None, ww, bb, True) if fused else separate(F.batch_norm(xx, None, None, ww, bb, True))
            (y.float() * weights).sum().backward()
            outs.append([host(t) for t in (y, xx.grad, ww.grad, bb.grad)])
    for got in outs[1:]:
        for a, b_ in zip(got, outs[-1]):
            assert np.linalg.norm(a - b_) <= 2e-2 * np.linalg.norm(b_)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation", [None, "relu", "gelu"])
def test_evaluation_without_gradients_as_in_torch(device, dtype, channels_last, activation, monkeypatch):
    """Evaluation under no_grad: one pass of activation(x * scale + shift) (no separate activation
    pass), against PyTorch's layers in float64 on the same (rounded) input, within the output
    dtype's rounding."""
    backend, fused = mt.backend.get_backend(device), []
    real = backend.batch_norm_apply
    monkeypatch.setattr(backend, "batch_norm_apply", lambda *args: fused.append(args[3:]) or real(*args))
    rng = np.random.default_rng()
    n, c, h, w = int(rng.integers(1, 5)), int(rng.choice([8, 24, 64])), int(rng.integers(3, 7)), int(rng.integers(3, 7))
    x = mt.tensor(rng.standard_normal((n, c, h, w)) * 2 + 0.5, dtype=getattr(mt, dtype), device=device)
    x = x.to(memory_format=mt.channels_last) if channels_last else x
    bn = nn.BatchNorm2d(c).to(device).eval()
    theirs = torch.nn.BatchNorm2d(c).double().eval()
    with mt.no_grad(), torch.no_grad():
        for name in ("weight", "bias", "running_mean"):
            value = rng.standard_normal(c)
            getattr(bn, name).copy_(mt.tensor(value, dtype=mt.float32, device=device))
            getattr(theirs, name).copy_(torch.tensor(value, dtype=torch.float32).double())
        var = rng.random(c) + 0.5
        bn.running_var.copy_(mt.tensor(var, dtype=mt.float32, device=device))
        theirs.running_var.copy_(torch.tensor(var, dtype=torch.float32).double())
        layers = nn.Sequential(bn, ACTIVATIONS[activation][0]()) if activation else bn
        y = layers(x)
        yt = theirs(torch.tensor(host(x)))
        yt = ACTIVATIONS[activation][1]()(yt) if activation else yt
    assert y.dtype == x.dtype and y.is_contiguous(memory_format=mt.channels_last if channels_last else
                                                  mt.contiguous_format)
    assert fused == [(activation,)]
    tol = 1e-5 if dtype == "float32" else 1e-2
    np.testing.assert_allclose(host(y), yt.numpy(), rtol=tol, atol=tol)


def test_batch_norm_gelu_names_a_bad_approximation():
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        F.batch_norm_gelu(mt.randn(2, 3, 4), None, None, training=True, approximate="fast")


def test_model_forward_fuses_through_batch_norm_activation():
    """airbench94's groups fuse each BN with its GELU: no separate GELU node in the graph."""
    from mytensor.models import get_model
    model = get_model("airbench94", num_classes=10, in_channels=3, image_size=32)
    group = model.groups[0]
    y = group(mt.randn(2, group.conv1.in_channels, 8, 8))
    assert repr(y.grad_fn) == "<BatchNormBackward>"
