"""Autocast: which dtype each op runs in (PyTorch's CUDA lists, on both devices), values and
gradients against a float64 reference, nesting and threads; on the GPU, the dtypes and values
of `torch.autocast` itself and a CUDA-graph capture of an autocast training step."""
import threading

import numpy as np
import pytest
import torch

import mytensor as mt
import mytensor.nn as nn
import mytensor.nn.functional as F
import mytensor.optim as optim

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])
LOW = ["bfloat16", "float16"]
TOL = {"bfloat16": 1e-2, "float16": 1e-3}  # normwise relative error against float64


def rel_error(actual, expected):
    actual = actual.detach().cpu().float().numpy().astype(np.float64) if isinstance(actual, torch.Tensor) \
        else actual.detach().cpu().numpy().astype(np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


def lib_inputs(L, arrays, device, dtype="float32"):
    return [L.tensor(a, dtype=getattr(L, dtype), device=device) for a in arrays]


def NF(L):
    """The functional module of library L."""
    return torch.nn.functional if L is torch else F


# (name, fn(L, *tensors), input shapes, policy): the dtype an op's output takes in a region
OPS = [
    ("conv2d", lambda L, x, w: NF(L).conv2d(x, w, padding=1),
     [(2, 3, 6, 6), (4, 3, 3, 3)], "lower"),
    ("linear", lambda L, x, w: NF(L).linear(x, w), [(5, 7), (3, 7)], "lower"),
    ("matmul", lambda L, a, b: a @ b, [(4, 5), (5, 3)], "lower"),
    ("bmm", lambda L, a, b: L.bmm(a, b), [(2, 4, 5), (2, 5, 3)], "lower"),
    ("exp", lambda L, x: x.exp(), [(3, 4)], "float32"),
    ("log", lambda L, x: (x.abs() + 1).log(), [(3, 4)], "float32"),
    ("pow", lambda L, x: x ** 2, [(3, 4)], "float32"),
    ("sum", lambda L, x: x.sum(), [(3, 4)], "float32"),
    ("cumsum", lambda L, x: x.cumsum(1), [(3, 4)], "float32"),
    ("softmax", lambda L, x: NF(L).softmax(x, 1), [(3, 4)], "float32"),
    ("log_softmax", lambda L, x: NF(L).log_softmax(x, 1), [(3, 4)], "float32"),
    ("mse_loss", lambda L, a, b: NF(L).mse_loss(a, b), [(3, 4), (3, 4)],
     "float32"),
    ("conv1d", lambda L, x, w: NF(L).conv1d(x, w), [(2, 3, 9), (4, 3, 3)],
     "lower"),
    ("log1p", lambda L, x: L.log1p(x.abs()), [(3, 4)], "float32"),
    ("layer_norm", lambda L, x: NF(L).layer_norm(x, (4,)), [(3, 4)], "float32"),
    ("softplus", lambda L, x: NF(L).softplus(x), [(3, 4)], "float32"),
    ("relu", lambda L, x: NF(L).relu(x), [(3, 4)], "same"),
    ("add", lambda L, a, b: a + b, [(3, 4), (3, 4)], "same"),
    ("max_pool2d", lambda L, x: NF(L).max_pool2d(x, 2), [(2, 3, 4, 4)], "same"),
]


def run_op(L, fn, inputs, device, low, region_dtype):
    """fn on inputs that are `low` (16-bit) first, so the policy is seen, inside a region."""
    xs = lib_inputs(L, inputs, device, low)
    with L.autocast(device_type=device, dtype=getattr(L, region_dtype)):
        return fn(L, *xs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("region", LOW)
@pytest.mark.parametrize("name,fn,shapes,policy", OPS, ids=[o[0] for o in OPS])
def test_op_dtype_in_region(name, fn, shapes, policy, region, device):
    rng = np.random.default_rng()
    arrays = [rng.standard_normal(s) for s in shapes]
    # float32 inputs: lower-precision ops cast them down, the rest leave them
    with mt.autocast(device_type=device, dtype=getattr(mt, region)):
        out = fn(mt, *lib_inputs(mt, arrays, device))
    assert out.dtype is (getattr(mt, region) if policy == "lower" else mt.float32), name
    # 16-bit inputs: float32 ops cast them up, the rest keep them
    out = run_op(mt, fn, arrays, device, region, region)
    assert out.dtype is {"lower": getattr(mt, region), "float32": mt.float32, "same": getattr(mt, region)}[policy]
    if device == "cuda":  # PyTorch's own lists, on the same inputs
        want = run_op(torch, fn, arrays, "cuda", region, region)
        assert out.dtype.name == str(want.dtype).replace("torch.", ""), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("region", LOW)
def test_lower_precision_values_and_gradients(region, device):
    """conv2d, linear and matmul in a region, forward and backward, against float64."""
    rng = np.random.default_rng()
    x, w, w2 = rng.standard_normal((4, 5, 9, 9)), rng.standard_normal((6, 5, 3, 3)) / 4, rng.standard_normal((10, 6))
    b, m = rng.standard_normal(10), rng.standard_normal((10, 7))

    def net(L, Fn, x, w, w2, b, m):
        h = Fn.conv2d(x, w, padding=1).mean((2, 3))  # smooth: a ReLU mask would flip where rounding moves a sign
        return (Fn.linear(h, w2, b) @ m).sum()

    ts = [torch.tensor(a, requires_grad=True) for a in (x, w, w2, b, m)]
    net(torch, torch.nn.functional, *ts).backward()
    xs = [mt.tensor(a, dtype=mt.float32, device=device, requires_grad=True) for a in (x, w, w2, b, m)]
    with mt.autocast(device_type=device, dtype=getattr(mt, region)):
        loss = net(mt, F, *xs)
    assert loss.dtype is mt.float32  # sum is a float32 op
    loss.backward()
    for i, (a, t) in enumerate(zip(xs, ts)):
        assert a.grad.dtype is mt.float32, i
        assert rel_error(a.grad, t.grad.numpy()) < 2 * TOL[region], f"gradient of input {i}"


@pytest.mark.parametrize("device", DEVICES)
def test_batch_norm_takes_16_bit_input_with_float32_parameters(device):
    rng = np.random.default_rng()
    x = rng.standard_normal((8, 3, 5, 5)) * 3 + 1
    bn = nn.BatchNorm2d(3).to(device)
    tbn = torch.nn.BatchNorm2d(3).double()
    xb = mt.tensor(x, dtype=mt.bfloat16, device=device, requires_grad=True)
    tx = torch.tensor(xb.detach().float().cpu().numpy().astype(np.float64), requires_grad=True)
    y, ty = bn(xb), tbn(tx)
    assert y.dtype is mt.bfloat16 and bn.running_mean.dtype is mt.float32
    assert rel_error(y, ty.detach().numpy()) < 1e-2
    g = rng.standard_normal(x.shape)
    (y.float() * mt.tensor(g, device=device)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    assert xb.grad.dtype is mt.bfloat16 and bn.weight.grad.dtype is mt.float32
    assert rel_error(xb.grad, tx.grad.numpy()) < 2e-2
    assert rel_error(bn.weight.grad, tbn.weight.grad.numpy()) < 1e-2
    np.testing.assert_allclose(bn.running_var.cpu().numpy(), tbn.running_var.detach().numpy(), rtol=1e-2)
    with pytest.raises(TypeError, match="float32"):
        F.batch_norm(xb, None, None, weight=mt.ones(3, dtype=mt.float64, device=device), training=True)


def test_float64_is_never_cast_and_regions_nest():
    a = mt.randn(3, 3, dtype=mt.float64)
    with mt.autocast("cpu"):
        assert (a @ a).dtype is mt.float64
        assert mt.is_autocast_enabled("cpu") and mt.get_autocast_dtype("cpu") is mt.bfloat16
        with mt.autocast("cpu", enabled=False):
            assert not mt.is_autocast_enabled("cpu")
            assert (a.float() @ a.float()).dtype is mt.float32
        with mt.autocast("cpu", dtype=mt.float16):
            assert (a.float() @ a.float()).dtype is mt.float16
        assert (a.float() @ a.float()).dtype is mt.bfloat16
    assert not mt.is_autocast_enabled("cpu")
    assert not mt.is_autocast_enabled("cuda")  # regions are per device type


def test_decorator_exceptions_and_threads():
    @mt.autocast("cpu")
    def product(a, b):
        return a @ b

    a = mt.randn(2, 2)
    assert product(a, a).dtype is mt.bfloat16 and (a @ a).dtype is mt.float32
    with pytest.raises(ZeroDivisionError):
        with mt.autocast("cpu"):
            1 / 0
    assert not mt.is_autocast_enabled("cpu")
    seen = []
    with mt.autocast("cpu"):
        worker = threading.Thread(target=lambda: seen.append((a @ a).dtype))  # another thread: no region
        worker.start()
        worker.join()
    assert seen == [mt.float32]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="float16 or mytensor.bfloat16"):
        mt.autocast("cpu", dtype=mt.float32)
    with pytest.raises(ValueError, match="device_type"):
        mt.autocast("tpu")


def test_training_step_under_autocast_learns():
    """A small CNN trained a few steps in bfloat16 regions: float32 master weights move and the loss falls."""
    mt.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 3))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = mt.randn(32, 1, 8, 8), mt.randint(0, 3, (32,))
    losses = []
    for _ in range(15):
        with mt.autocast("cpu"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.dtype is mt.float32 for p in model.parameters())
    assert losses[-1] < 0.5 * losses[0]


# ------------------------------------------------------------------------- GradScaler
def _twin_mlps(rng):
    """The same two-layer network in both libraries."""
    w1, b1, w2 = rng.standard_normal((16, 8)) / 3, rng.standard_normal(16) / 3, rng.standard_normal((4, 16)) / 4
    mine = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4, bias=False))
    theirs = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4, bias=False))
    with torch.no_grad():
        for p, t, v in zip(mine.parameters(), theirs.parameters(), (w1, b1, w2)):
            p.data = mt.tensor(v, dtype=mt.float32)
            t.copy_(torch.tensor(v, dtype=torch.float32))
    return mine, theirs


def test_grad_scaler_matches_torch_step_by_step_with_overflows():
    """Steps whose gradients overflow (an infinite input: skipped, the scale backed off), then growth
    after `growth_interval` good steps: the same scales and weights as PyTorch's. The overflows are
    made, not found near float32's largest value, where the two libraries' different summation
    orders could overflow on different steps."""
    rng = np.random.default_rng()
    mine, theirs = _twin_mlps(rng)
    opt = optim.SGD(mine.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    kw = dict(init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    scaler, tscaler = mt.amp.GradScaler("cpu", **kw), torch.amp.GradScaler("cpu", **kw)
    overflowing = {0, 1, 9, 10, 16}
    scales = []
    for step in range(20):
        x, y = rng.standard_normal((32, 8)) * 4, rng.standard_normal((32, 4))
        if step in overflowing:
            x[int(rng.integers(32)), int(rng.integers(8))] = np.inf
        for lib, model, o, s in ((mt, mine, opt, scaler), (torch, theirs, topt, tscaler)):
            loss = (lib.nn.functional if lib is torch else F).mse_loss(
                model(lib.tensor(x, dtype=lib.float32)), lib.tensor(y, dtype=lib.float32))
            o.zero_grad()
            s.scale(loss).backward()
            s.step(o)
            s.update()
        assert scaler.get_scale() == tscaler.get_scale(), step
        scales.append(tscaler.get_scale())
        for p, t in zip(mine.parameters(), theirs.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert scales[:2] == [2.0 ** 15, 2.0 ** 14]  # the first steps overflowed: skipped, the scale backed off
    assert scales[4] == 2.0 ** 15  # and grew after three good steps
    state = scaler.state_dict()
    assert state["scale"] == tscaler.state_dict()["scale"]
    assert state["_growth_tracker"] == tscaler.state_dict()["_growth_tracker"]
    again = mt.amp.GradScaler("cpu")
    again.load_state_dict(state)
    assert again.get_scale() == scaler.get_scale() and again.state_dict() == state


def test_grad_scaler_usage_errors_and_disabled():
    model = nn.Linear(3, 1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    scaler = mt.amp.GradScaler("cpu")
    scaler.scale(model(mt.randn(4, 3)).sum()).backward()
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        scaler.unscale_(opt)
    scaler.update()
    with pytest.raises(ValueError, match="growth_factor"):
        mt.amp.GradScaler(growth_factor=1.0)
    off = mt.amp.GradScaler("cpu", enabled=False)
    loss = model(mt.randn(4, 3)).sum()
    assert off.scale(loss) is loss and off.state_dict() == {}


@pytest.mark.gpu
@pytest.mark.skipif(not mt.cuda_is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_step_replays_from_a_cuda_graph(precision):
    """The trainer's step in bf16 (and fp16 with loss scaling) captured in a CUDA graph gives
    the weights the same step run eagerly gives, over several replays."""
    from mytensor.training.loop import train_step
    runs = []
    for graphed in (False, True):
        mt.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(8 * 8 * 8, 10)).to("cuda")
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        scaler = mt.amp.GradScaler("cuda", init_scale=2.0 ** 20) if precision == "fp16" else None
        step = train_step(model, opt, precision=precision, scaler=scaler)
        step = mt.cuda.graphed(step) if graphed else step
        rng = np.random.default_rng(1)
        for _ in range(5):
            x = mt.tensor(rng.standard_normal((16, 3, 16, 16)), dtype=mt.float32, device="cuda")
            y = mt.tensor(rng.integers(0, 10, 16), device="cuda")
            step(x, y)
        assert not graphed or step.graph is not None
        runs.append([p.detach().cpu().numpy() for p in model.parameters()])
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_training_run_records_its_precision(run_options, tmp_path):
    """`--precision` reaches the step and config.json: auto is fp32 on the CPU; bf16 trains there too."""
    import json
    from mytensor.training.run import train
    rows = train(run_options("auto", epochs=1), show_progress=False)
    saved = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert saved["precision"] == "auto" and saved["resolved_precision"] == "fp32"
    rows16 = train(run_options("bf16", epochs=1, precision="bf16"), show_progress=False)
    saved = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert saved["resolved_precision"] == "bf16"
    assert np.isfinite(rows16[0]["train_loss"]) and abs(rows16[0]["train_loss"] - rows[0]["train_loss"]) < 0.2
    with pytest.raises(ValueError, match="--precision 'fp8'"):
        train(run_options("bad", precision="fp8"), show_progress=False)
