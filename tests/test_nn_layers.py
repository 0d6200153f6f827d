"""Every layer and loss module against PyTorch: forward and backward, with the
same weights (copied from the torch layer through load_state_dict)."""
import inspect

import numpy as np
import pytest
import torch

import mytensor as mt
from mytensor import nn

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])
DTYPES = ["float32", "float64"]
TOL = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-10, atol=1e-12)}


def to_np(t):
    return t.detach().cpu().numpy()


def twin(make, dtype, device):
    """(ours, theirs): the same layer in both libraries with identical state."""
    torch.manual_seed(0)
    theirs = make(torch.nn).to(getattr(torch, dtype))
    ours = make(nn).to(getattr(mt, dtype))
    ours.load_state_dict(theirs.state_dict())
    return ours.to(device), theirs


def check_close(a, b, dtype, what):
    np.testing.assert_allclose(a, b, err_msg=what, **TOL[dtype])


def run_and_compare(ours, theirs, inputs, dtype, device, grad_of=(0,), seed=1):
    """Forward both with the same inputs, backward the same random upstream
    gradient, and compare outputs, input gradients, parameter gradients and buffers."""
    ours_in, theirs_in = [], []
    for i, x in enumerate(inputs):
        needs = i in grad_of
        ours_in.append(mt.tensor(x, device=device, requires_grad=needs))
        theirs_in.append(torch.tensor(x, requires_grad=needs))
    out, expected = ours(*ours_in), theirs(*theirs_in)
    check_close(to_np(out), expected.detach().numpy(), dtype, "forward")
    assert out.dtype == getattr(mt, dtype)
    if not expected.requires_grad:
        return
    g = np.random.default_rng(seed).standard_normal(expected.shape).astype(dtype)
    out.backward(mt.tensor(g, device=device))
    expected.backward(torch.from_numpy(g))
    for i in grad_of:
        check_close(to_np(ours_in[i].grad), theirs_in[i].grad.numpy(), dtype, f"grad of input {i}")
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        check_close(to_np(p.grad), theirs_params[name].grad.numpy(), dtype, f"grad of {name}")
    theirs_state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        check_close(value, theirs_state[name].numpy(), dtype, f"buffer {name}")


def randn(*shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


LAYERS = {
    "linear": (lambda m: m.Linear(5, 4), (3, 5)),
    "linear_nobias_3d": (lambda m: m.Linear(5, 4, bias=False), (2, 3, 5)),
    "conv": (lambda m: m.Conv2d(3, 4, 3), (2, 3, 7, 6)),
    "conv_pad": (lambda m: m.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 6)),
    "conv_stride_pad": (lambda m: m.Conv2d(3, 5, (3, 5), stride=2, padding=(1, 2)), (2, 3, 9, 8)),
    "conv_dilation": (lambda m: m.Conv2d(2, 3, 3, dilation=2, padding=2), (2, 2, 8, 8)),
    "conv_groups": (lambda m: m.Conv2d(4, 6, 3, groups=2, padding=1, bias=False), (2, 4, 5, 5)),
    "conv_depthwise": (lambda m: m.Conv2d(3, 3, 3, groups=3), (2, 3, 5, 5)),
    "conv_1x1_stride2": (lambda m: m.Conv2d(4, 8, 1, stride=2, bias=False), (2, 4, 6, 6)),
    "conv_same": (lambda m: m.Conv2d(2, 3, 5, padding="same"), (2, 2, 6, 7)),
    "maxpool": (lambda m: m.MaxPool2d(2), (2, 3, 6, 6)),
    "maxpool_stride_pad": (lambda m: m.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 7)),
    "avgpool": (lambda m: m.AvgPool2d(2), (2, 3, 6, 6)),
    "avgpool_stride_pad": (lambda m: m.AvgPool2d(3, stride=2, padding=1), (2, 3, 7, 7)),
    "avgpool_no_pad_count": (lambda m: m.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 3, 7, 7)),
    "avgpool_divisor": (lambda m: m.AvgPool2d(2, divisor_override=3), (2, 3, 6, 6)),
    "adaptive_avgpool_1": (lambda m: m.AdaptiveAvgPool2d(1), (2, 3, 5, 5)),
    "adaptive_avgpool_2": (lambda m: m.AdaptiveAvgPool2d((2, 2)), (2, 3, 8, 6)),
    "relu": (lambda m: m.ReLU(), (4, 5)),
    "leaky_relu": (lambda m: m.LeakyReLU(0.2), (4, 5)),
    "gelu": (lambda m: m.GELU(), (4, 5)),
    "gelu_tanh": (lambda m: m.GELU(approximate="tanh"), (4, 5)),
    "silu": (lambda m: m.SiLU(), (4, 5)),
    "sigmoid": (lambda m: m.Sigmoid(), (4, 5)),
    "tanh": (lambda m: m.Tanh(), (4, 5)),
    "softmax": (lambda m: m.Softmax(dim=1), (4, 5)),
    "softmax_last_3d": (lambda m: m.Softmax(dim=-1), (2, 3, 5)),
    "log_softmax": (lambda m: m.LogSoftmax(dim=1), (4, 5)),
    "flatten": (lambda m: m.Flatten(), (2, 3, 4, 5)),
    "flatten_range": (lambda m: m.Flatten(0, 2), (2, 3, 4, 5)),
    "identity": (lambda m: m.Identity(), (3, 4)),
    "dropout_eval": (lambda m: m.Dropout(0.5).eval(), (4, 5)),
    "dropout_p0": (lambda m: m.Dropout(0.0), (4, 5)),
    "sequential": (lambda m: m.Sequential(m.Conv2d(2, 4, 3, padding=1), m.BatchNorm2d(4), m.ReLU(), m.MaxPool2d(2),
                                          m.Flatten(), m.Linear(4 * 3 * 3, 5)), (3, 2, 6, 6)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_torch(name, dtype, device):
    make, shape = LAYERS[name]
    ours, theirs = twin(make, dtype, device)
    run_and_compare(ours, theirs, [randn(*shape, dtype=dtype)], dtype, device)


BATCHNORMS = {
    "bn1d_2d_input": (lambda m: m.BatchNorm1d(4), (8, 4)),
    "bn1d_3d_input": (lambda m: m.BatchNorm1d(4, momentum=0.3), (5, 4, 3)),
    "bn2d": (lambda m: m.BatchNorm2d(3), (4, 3, 5, 5)),
    "bn2d_cumulative": (lambda m: m.BatchNorm2d(3, momentum=None), (4, 3, 3, 3)),
    "bn2d_no_affine": (lambda m: m.BatchNorm2d(3, affine=False), (4, 3, 3, 3)),
    "bn2d_no_running_stats": (lambda m: m.BatchNorm2d(3, track_running_stats=False), (4, 3, 3, 3)),
}


# BatchNorm's `bias=` argument is new in PyTorch 2.13; older references can't check it
TORCH_BN_HAS_BIAS = "bias" in inspect.signature(torch.nn.BatchNorm2d.__init__).parameters
if TORCH_BN_HAS_BIAS:
    BATCHNORMS["bn2d_no_bias"] = (lambda m: m.BatchNorm2d(3, bias=False), (4, 3, 3, 3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(BATCHNORMS))
def test_batchnorm_train_then_eval_matches_torch(name, dtype, device):
    """Three training batches (updating the running statistics), then eval."""
    make, shape = BATCHNORMS[name]
    ours, theirs = twin(make, dtype, device)
    with torch.no_grad():  # a non-trivial affine transform
        for p in theirs.parameters():
            p.uniform_(0.5, 1.5)
    ours.load_state_dict(theirs.state_dict())
    for step in range(3):
        ours.zero_grad()
        theirs.zero_grad()
        run_and_compare(ours, theirs, [randn(*shape, dtype=dtype, seed=step) * 2 + 1], dtype, device, seed=step)
    if ours.track_running_stats:
        assert ours.num_batches_tracked.item() == 3
    ours.eval()
    theirs.eval()
    run_and_compare(ours, theirs, [randn(*shape, dtype=dtype, seed=9)], dtype, device)


def test_batchnorm_checks_its_input():
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(mt.zeros(2, 3))
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        nn.BatchNorm1d(3)(mt.zeros(2, 3, 4, 4))


@pytest.mark.parametrize("device", DEVICES)
def test_dropout_in_training(device):
    mt.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = mt.ones(200, 100, device=device, requires_grad=True)
    y = drop(x)
    out = to_np(y)
    kept = out != 0
    assert 0.73 < kept.mean() < 0.77
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(to_np(x.grad), out, rtol=1e-6)  # the gradient goes through the same mask
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def class_targets(n, c, seed=0, ignore=False):
    t = np.random.default_rng(seed).integers(0, c, size=n)
    if ignore:
        t[1] = -100
    return t


LOSSES = {
    "cross_entropy": (lambda m: m.CrossEntropyLoss(), lambda d: [randn(6, 5, dtype=d), class_targets(6, 5)]),
    "cross_entropy_sum": (lambda m: m.CrossEntropyLoss(reduction="sum"),
                          lambda d: [randn(6, 5, dtype=d), class_targets(6, 5)]),
    "cross_entropy_none": (lambda m: m.CrossEntropyLoss(reduction="none"),
                           lambda d: [randn(6, 5, dtype=d), class_targets(6, 5)]),
    "cross_entropy_smoothing": (lambda m: m.CrossEntropyLoss(label_smoothing=0.1),
                                lambda d: [randn(6, 5, dtype=d), class_targets(6, 5)]),
    "cross_entropy_ignore": (lambda m: m.CrossEntropyLoss(ignore_index=-100),
                             lambda d: [randn(6, 5, dtype=d), class_targets(6, 5, ignore=True)]),
    "nll": (lambda m: m.NLLLoss(), lambda d: [np.log(np.random.default_rng(0).dirichlet(np.ones(5), 6)).astype(d),
                                              class_targets(6, 5)]),
    "nll_sum": (lambda m: m.NLLLoss(reduction="sum"),
                lambda d: [randn(6, 5, dtype=d), class_targets(6, 5)]),
    "mse": (lambda m: m.MSELoss(), lambda d: [randn(4, 3, dtype=d), randn(4, 3, dtype=d, seed=1)]),
    "mse_none": (lambda m: m.MSELoss(reduction="none"), lambda d: [randn(4, 3, dtype=d), randn(4, 3, dtype=d, seed=1)]),
    "bce": (lambda m: m.BCELoss(), lambda d: [np.random.default_rng(0).uniform(0.05, 0.95, (4, 3)).astype(d),
                                              np.random.default_rng(1).uniform(0, 1, (4, 3)).astype(d)]),
    "bce_with_logits": (lambda m: m.BCEWithLogitsLoss(),
                        lambda d: [randn(4, 3, dtype=d) * 3, (randn(4, 3, dtype=d, seed=1) > 0).astype(d)]),
    "bce_with_logits_sum": (lambda m: m.BCEWithLogitsLoss(reduction="sum"),
                            lambda d: [randn(4, 3, dtype=d) * 3,
                                       np.random.default_rng(1).uniform(0, 1, (4, 3)).astype(d)]),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_torch(name, dtype, device):
    make, inputs = LOSSES[name]
    ours, theirs = twin(make, dtype, device)
    run_and_compare(ours, theirs, inputs(dtype), dtype, device)


def test_layers_built_in_float64_and_on_a_device():
    lin = nn.Linear(3, 2, dtype=mt.float64)
    assert lin.weight.dtype == mt.float64 and lin.bias.dtype == mt.float64
    conv = nn.Conv2d(2, 4, 3, bias=False)
    assert conv.weight.shape == (4, 2, 3, 3) and conv.bias is None
    assert nn.Conv2d(4, 8, 3, groups=4).weight.shape == (8, 1, 3, 3)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
