"""Optimizers against PyTorch, step for step, and their state_dict round trips."""
import copy
import pickle

import numpy as np
import pytest
import torch

import mytensor as mt
from mytensor import nn, optim

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])
SHAPES = [(4, 3), (3,), (2, 3, 2, 2), ()]
TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-13)}


def make_params(dtype, device, seed=0):
    """The same starting weights for mytensor and torch."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours = [nn.Parameter(mt.tensor(a, device=device)) for a in arrays]
    theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    return ours, theirs


def set_grads(ours, theirs, rng, dtype, skip=()):
    """The same random gradient on both sides; parameters in `skip` get none."""
    for i, (p, q) in enumerate(zip(ours, theirs)):
        if i in skip:
            p.grad, q.grad = None, None
            continue
        g = rng.standard_normal(p.shape).astype(dtype)
        p.grad = mt.tensor(g, device=p.device)
        q.grad = torch.from_numpy(g.copy())


def assert_same(ours, theirs, dtype):
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.detach().cpu().numpy(), q.detach().numpy(), **TOL[dtype])


def run_both(make_ours, make_theirs, dtype, device, steps=5, skip_at=None):
    ours, theirs = make_params(dtype, device)
    opt, topt = make_ours(ours), make_theirs(theirs)
    rng = np.random.default_rng(1)
    for step in range(steps):
        set_grads(ours, theirs, rng, dtype, skip=(skip_at or {}).get(step, ()))
        opt.step()
        topt.step()
        assert_same(ours, theirs, dtype)
    return opt, ours


SGD_VARIANTS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.9, dampening=0.3),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.1, momentum=0.8, weight_decay=0.05, nesterov=True),
    dict(lr=0.1, momentum=0.5, dampening=0.5, weight_decay=0.1),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", SGD_VARIANTS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_sgd_matches_torch(kwargs, dtype, device):
    run_both(lambda p: optim.SGD(p, **kwargs), lambda p: torch.optim.SGD(p, **kwargs), dtype, device)


ADAM_VARIANTS = [
    dict(lr=0.01),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.01, weight_decay=0.1),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", ADAM_VARIANTS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_and_adamw_match_torch(name, kwargs, dtype, device):
    run_both(lambda p: getattr(optim, name)(p, **kwargs), lambda p: getattr(torch.optim, name)(p, **kwargs),
             dtype, device)


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01)),
                                         ("AdamW", dict(lr=0.01))])
def test_parameters_without_grad_are_skipped(name, kwargs):
    # parameter 1 has no gradient at steps 0 and 2, parameter 3 never has one
    skip = {0: (1, 3), 1: (3,), 2: (1, 3), 3: (3,), 4: (3,)}
    opt, ours = run_both(lambda p: getattr(optim, name)(p, **kwargs),
                         lambda p: getattr(torch.optim, name)(p, **kwargs), "float64", "cpu", skip_at=skip)
    assert ours[3] not in opt.state


def test_adamw_default_weight_decay():
    assert optim.AdamW([nn.Parameter(mt.zeros(1))]).defaults["weight_decay"] == 0.01
    assert optim.Adam([nn.Parameter(mt.zeros(1))]).defaults["weight_decay"] == 0


def test_param_groups_with_their_own_settings():
    ours, theirs = make_params("float64", "cpu")
    opt = optim.SGD([{"params": ours[:2]}, {"params": ours[2:], "lr": 0.01, "momentum": 0.5}], lr=0.1,
                    momentum=0.9)
    topt = torch.optim.SGD([{"params": theirs[:2]}, {"params": theirs[2:], "lr": 0.01, "momentum": 0.5}], lr=0.1,
                           momentum=0.9)
    rng = np.random.default_rng(3)
    for _ in range(4):
        set_grads(ours, theirs, rng, "float64")
        opt.step()
        topt.step()
    assert_same(ours, theirs, "float64")
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                         ("Adam", dict(lr=0.01)), ("AdamW", dict(lr=0.01, weight_decay=0.1))])
@pytest.mark.parametrize("device", DEVICES)
def test_state_dict_resume_matches_uninterrupted(name, kwargs, device):
    rng = np.random.default_rng(5)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(6)]

    def apply(opt, params, gs):
        for p, g in zip(params, gs):
            p.grad = mt.tensor(g, device=device)
        opt.step()

    full, _ = make_params("float32", device)
    opt = getattr(optim, name)(full, **kwargs)
    for gs in grads:
        apply(opt, full, gs)

    first, _ = make_params("float32", device)
    opt1 = getattr(optim, name)(first, **kwargs)
    for gs in grads[:3]:
        apply(opt1, first, gs)
    # what a checkpoint holds: plain NumPy and Python values, through pickle
    saved = pickle.loads(pickle.dumps({"params": [p.detach().cpu().numpy() for p in first],
                                       "optimizer": opt1.state_dict()}))
    for entries in saved["optimizer"]["state"].values():
        assert all(isinstance(v, (int, float, np.ndarray)) for v in entries.values())

    resumed = [nn.Parameter(mt.tensor(a, device=device)) for a in saved["params"]]
    opt2 = getattr(optim, name)(resumed, **kwargs)
    opt2.load_state_dict(saved["optimizer"])
    for gs in grads[3:]:
        apply(opt2, resumed, gs)
    for p, q in zip(full, resumed):
        np.testing.assert_array_equal(p.detach().cpu().numpy(), q.detach().cpu().numpy())


def test_state_dict_layout_and_group_settings_restored():
    ours, _ = make_params("float32", "cpu")
    opt = optim.SGD([{"params": ours[:1]}, {"params": ours[1:], "lr": 0.5}], lr=0.1, momentum=0.9)
    for p in ours:
        p.grad = mt.ones_like(p)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1, 2, 3]]
    assert sorted(sd["state"]) == [0, 1, 2, 3]
    assert set(sd["state"][0]) == {"momentum_buffer"}
    sd["param_groups"][1]["lr"] = 0.25
    opt2 = optim.SGD([{"params": ours[:1]}, {"params": ours[1:]}], lr=0.1, momentum=0.9)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[1]["lr"] == 0.25
    assert opt2.param_groups[1]["params"][0] is ours[1]
    np.testing.assert_array_equal(opt2.state[ours[0]]["momentum_buffer"].numpy(),
                                  opt.state[ours[0]]["momentum_buffer"].numpy())


def combined(params):
    """Muon for the matrices and filters, SGD (two groups) for the rest, as one optimizer."""
    filters = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    return optim.CombinedOptimizer(optim.Muon(filters, lr=0.05, momentum=0.6, normalize_weights=True),
                                   optim.SGD([{"params": rest[:1]}, {"params": rest[1:], "lr": 0.2}], lr=0.1,
                                             momentum=0.85, nesterov=True, weight_decay=1e-3))


def test_combined_optimizer_steps_as_its_parts_schedules_and_resumes_exactly():
    rng = np.random.default_rng(6)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(6)]

    def run(step, params, gs, scheduler=None):
        for gradients in gs:
            for p, g in zip(params, gradients):
                p.grad = mt.tensor(g)
            step()
            if scheduler is not None:
                scheduler.step()

    def schedule(opt):
        return optim.lr_scheduler.LambdaLR(opt, [lambda s: 1 - s / 6, lambda s: 1 - s / 6, lambda s: 0.5])

    full, _ = make_params("float32", "cpu")
    opt = combined(full)
    assert [g["params"] for g in opt.param_groups] == [full[0:1] + full[2:3], full[1:2], full[3:]]
    run(opt.step, full, grads)
    alone, _ = make_params("float32", "cpu")
    muon, sgd = combined(alone).optimizers
    run(lambda: (muon.step(), sgd.step()), alone, grads)
    for p, q in zip(full, alone):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())

    scheduler = schedule(opt)
    for _ in range(3):
        scheduler.step()
    assert opt.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05 / 2)  # the schedule sets theirs
    assert [g["lr"] for g in opt.optimizers[1].param_groups] == pytest.approx([0.1 / 2, 0.2 / 2])

    # stopped after 3 steps and resumed from a checkpoint, as `--resume` does: the same weights
    full, _ = make_params("float32", "cpu")
    opt = combined(full)
    run(opt.step, full, grads, schedule(opt))
    first, _ = make_params("float32", "cpu")
    opt1 = combined(first)
    run(opt1.step, first, grads[:3], schedule(opt1))
    saved = pickle.loads(pickle.dumps({"params": [p.detach().numpy() for p in first], "optimizer": opt1.state_dict()}))
    assert [g["params"] for g in saved["optimizer"]["param_groups"]] == [[0, 1], [2], [3]]
    assert sorted(saved["optimizer"]["state"]) == [0, 1, 2, 3]
    resumed = [nn.Parameter(mt.tensor(a)) for a in saved["params"]]
    opt2 = combined(resumed)
    opt2.load_state_dict(saved["optimizer"])
    assert opt2.state[resumed[0]]["momentum_buffer"].shape == (4, 3)
    scheduler = schedule(opt2)
    for _ in range(3):
        scheduler.step()
    run(opt2.step, resumed, grads[3:], scheduler)
    for p, q in zip(full, resumed):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    with pytest.raises(ValueError, match="parameter groups"):
        opt2.load_state_dict(optim.SGD(resumed).state_dict())


def test_load_state_dict_rejects_other_layouts():
    ours, _ = make_params("float32", "cpu")
    opt = optim.Adam(ours)
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict(optim.Adam([{"params": ours[:1]}, {"params": ours[1:]}]).state_dict())
    with pytest.raises(ValueError, match="has 4 parameters"):
        opt.load_state_dict(optim.Adam(ours[:2]).state_dict())


def test_zero_grad():
    ours, _ = make_params("float32", "cpu")
    opt = optim.SGD(ours, lr=0.1)
    for p in ours:
        p.grad = mt.ones_like(p)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in ours)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


def test_invalid_arguments():
    p = [nn.Parameter(mt.zeros(2))]
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam(p, lr=-1)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam(p, betas=(1.0, 0.9))
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(p[0], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": p}, {"params": p}], lr=0.1)


def test_step_updates_the_same_parameter_objects_in_place():
    p = nn.Parameter(mt.ones(3))
    storage = p._data
    opt = optim.SGD([p], lr=0.5)
    p.grad = mt.ones(3)
    opt.step()
    assert p._data is storage
    np.testing.assert_allclose(p.detach().numpy(), 0.5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_hyperparameters_reach_the_device_only_when_they_change(name, device, monkeypatch):
    """A step's hyperparameters live in device memory (what lets a CUDA graph replay the
    update with a new learning rate); they are rewritten when they change -- every step for
    Adam's bias correction, only after a learning-rate change for SGD -- and the two halves
    of a step, `prepare_step` then `apply_step`, train like `step` and like PyTorch."""
    ours, theirs = make_params("float64", device)
    make = {"sgd": (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
            "adam": (lambda ps: optim.Adam(ps, lr=0.01), lambda ps: torch.optim.Adam(ps, lr=0.01))}[name]
    opt, topt = make[0](ours), make[1](theirs)
    backend = ours[0]._backend
    writes = []
    real_write = backend.write_scalars
    monkeypatch.setattr(backend, "write_scalars", lambda values, out=None: (writes.append(values),
                                                                           real_write(values, out))[1])
    rng = np.random.default_rng(2)
    for step in range(6):
        if step == 3:
            for group in opt.param_groups + topt.param_groups:
                group["lr"] /= 2
        set_grads(ours, theirs, rng, "float64")
        opt.prepare_step()
        opt.apply_step()
        topt.step()
        assert_same(ours, theirs, "float64")
    assert len(writes) == (6 if name == "adam" else 2)
    assert writes[-1][0] == pytest.approx(0.05 if name == "sgd" else 0.005 / (1 - 0.9 ** 6))


def test_optimizer_state_survives_deepcopy_of_state_dict():
    ours, _ = make_params("float32", "cpu")
    opt = optim.Adam(ours, lr=0.1)
    for p in ours:
        p.grad = mt.ones_like(p)
    opt.step()
    sd = copy.deepcopy(opt.state_dict())
    assert sd["state"][0]["step"] == 1
    assert isinstance(sd["state"][0]["exp_avg"], np.ndarray)


def small_cnn(lib):
    # no conv bias before BatchNorm: its gradient is pure rounding noise, which Adam would amplify
    return lib.Sequential(lib.Conv2d(2, 4, 3, padding=1, bias=False), lib.BatchNorm2d(4), lib.ReLU(), lib.MaxPool2d(2),
                          lib.Flatten(), lib.Linear(4 * 3 * 3, 3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)),
    ("Adam", dict(lr=0.01, weight_decay=1e-3)),
    ("AdamW", dict(lr=0.01)),
])
def test_training_a_small_model_matches_torch(name, kwargs, device):
    """Same weights, same batches: the parameters stay equal over several steps."""
    import mytensor.nn.functional as F
    torch.manual_seed(0)
    theirs = small_cnn(torch.nn).double()
    ours = small_cnn(nn).double()
    ours.load_state_dict(theirs.state_dict())
    ours.to(device)
    opt, topt = getattr(optim, name)(ours.parameters(), **kwargs), getattr(torch.optim, name)(theirs.parameters(),
                                                                                              **kwargs)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.standard_normal((4, 2, 6, 6)), rng.integers(0, 3, 4)
        opt.zero_grad()
        F.cross_entropy(ours(mt.tensor(x, device=device)), mt.tensor(y, device=device)).backward()
        opt.step()
        topt.zero_grad()
        torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
    expected = theirs.state_dict()
    for key, value in ours.state_dict().items():
        np.testing.assert_allclose(value, expected[key].numpy(), rtol=1e-9, atol=1e-11, err_msg=key)


@pytest.mark.parametrize("device", DEVICES)
def test_resuming_model_optimizer_and_scheduler_matches_uninterrupted(device):
    """Stop after 3 of 8 steps, pickle the three state dicts, rebuild everything, load, go on:
    the final weights equal those of the run that never stopped."""
    import mytensor.nn.functional as F
    from mytensor.optim import lr_scheduler
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((4, 2, 6, 6)).astype(np.float32), rng.integers(0, 3, 4)) for _ in range(8)]

    def build():
        mt.manual_seed(0)
        model = small_cnn(nn).to(device)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        return model, opt, lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=8)

    def train(model, opt, sched, steps):
        for x, y in steps:
            opt.zero_grad()
            F.cross_entropy(model(mt.tensor(x, device=device)), mt.tensor(y, device=device)).backward()
            opt.step()
            sched.step()

    full = build()
    train(*full, batches)

    first = build()
    train(*first, batches[:3])
    saved = pickle.dumps({"model": first[0].state_dict(), "optimizer": first[1].state_dict(),
                          "scheduler": first[2].state_dict()})
    model, opt, sched = build()
    state = pickle.loads(saved)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    train(model, opt, sched, batches[3:])
    expected = full[0].state_dict()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    assert opt.param_groups[0]["lr"] == full[1].param_groups[0]["lr"]
