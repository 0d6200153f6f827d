"""Learning-rate schedulers against torch.optim.lr_scheduler, step by step."""
import pickle
import warnings

import numpy as np
import pytest
import torch

import mytensor as mt
from mytensor import nn, optim
from mytensor.optim import lr_scheduler

STEPS = 30


def optimizers(name="SGD", **kwargs):
    """Two parameter groups, the second with its own lr."""
    kwargs = {"lr": 0.1, **kwargs}
    ours = getattr(optim, name)([{"params": [nn.Parameter(mt.zeros(2))]},
                                 {"params": [nn.Parameter(mt.zeros(3))], "lr": 0.05}], **kwargs)
    theirs = getattr(torch.optim, name)([{"params": [torch.nn.Parameter(torch.zeros(2))]},
                                         {"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 0.05}], **kwargs)
    return ours, theirs


def build(opt, lib, spec):
    """spec: (class name, kwargs), or ("SequentialLR", [specs], milestones)."""
    if spec[0] == "SequentialLR":
        inner = [build(opt, lib, s) for s in spec[1]]
        return lib.SequentialLR(opt, inner, milestones=spec[2])
    return getattr(lib, spec[0])(opt, **spec[1])


def trace(opt, sched, steps, keys=("lr",)):
    """The group settings after construction and after every step."""
    rows = [[(g[k] if k != "betas" else g[k][0]) for g in opt.param_groups for k in keys]]
    for _ in range(steps):
        opt.step()
        sched.step()
        rows.append([(g[k] if k != "betas" else g[k][0]) for g in opt.param_groups for k in keys])
    return np.array(rows)


SPECS = {
    "step": ("StepLR", dict(step_size=7, gamma=0.5)),
    "multistep": ("MultiStepLR", dict(milestones=[5, 12, 12, 20], gamma=0.3)),
    "cosine": ("CosineAnnealingLR", dict(T_max=10, eta_min=0.001)),  # past T_max it rises again, as in torch
    "cosine_long": ("CosineAnnealingLR", dict(T_max=STEPS)),
    "linear_warmup": ("LinearLR", dict(start_factor=0.1, total_iters=5)),
    "linear_decay": ("LinearLR", dict(start_factor=1.0, end_factor=0.2, total_iters=12)),
    "onecycle": ("OneCycleLR", dict(max_lr=1.0, total_steps=STEPS)),
    "onecycle_custom": ("OneCycleLR", dict(max_lr=[0.5, 2.0], total_steps=STEPS + 5, pct_start=0.25,
                                           div_factor=10.0, final_div_factor=100.0)),
    "onecycle_linear": ("OneCycleLR", dict(max_lr=0.3, epochs=3, steps_per_epoch=10, anneal_strategy="linear")),
    "onecycle_three_phase": ("OneCycleLR", dict(max_lr=0.3, total_steps=STEPS, three_phase=True)),
    "warmup_then_cosine": ("SequentialLR", [("LinearLR", dict(start_factor=0.1, total_iters=5)),
                                            ("CosineAnnealingLR", dict(T_max=25))], [5]),
    "warmup_then_step": ("SequentialLR", [("LinearLR", dict(start_factor=0.25, total_iters=4)),
                                          ("StepLR", dict(step_size=6, gamma=0.5))], [4]),
    "three_stages": ("SequentialLR", [("LinearLR", dict(start_factor=0.5, total_iters=3)),
                                      ("MultiStepLR", dict(milestones=[4], gamma=0.1)),
                                      ("CosineAnnealingLR", dict(T_max=10))], [3, 10]),
}


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("name", list(SPECS))
def test_lr_sequence_matches_torch(name, optimizer):
    spec = SPECS[name]
    ours, theirs = optimizers(optimizer, **({"momentum": 0.9} if optimizer == "SGD" else {}))
    keys = ("lr", "momentum") if optimizer == "SGD" else ("lr", "betas")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about stepping without gradients
        expected = trace(theirs, build(theirs, torch.optim.lr_scheduler, spec), STEPS, keys)
    got = trace(ours, build(ours, lr_scheduler, spec), STEPS, keys)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_get_last_lr():
    ours, _ = optimizers()
    sched = lr_scheduler.StepLR(ours, step_size=2, gamma=0.5)
    seen = [sched.get_last_lr()]
    for _ in range(4):
        ours.step()
        sched.step()
        seen.append(sched.get_last_lr())
    assert seen == [[0.1, 0.05], [0.1, 0.05], [0.05, 0.025], [0.05, 0.025], [0.025, 0.0125]]


@pytest.mark.parametrize("name", ["step", "cosine", "onecycle", "warmup_then_cosine", "three_stages"])
def test_state_dict_resume_matches_uninterrupted(name):
    spec = SPECS[name]
    opt, _ = optimizers(momentum=0.9)
    full = trace(opt, build(opt, lr_scheduler, spec), STEPS, ("lr", "momentum"))

    opt1, _ = optimizers(momentum=0.9)
    sched1 = build(opt1, lr_scheduler, spec)
    first = trace(opt1, sched1, 12, ("lr", "momentum"))
    saved = pickle.loads(pickle.dumps({"optimizer": opt1.state_dict(), "scheduler": sched1.state_dict()}))

    opt2, _ = optimizers(momentum=0.9)
    sched2 = build(opt2, lr_scheduler, spec)  # as a resumed run would: build, then load
    opt2.load_state_dict(saved["optimizer"])
    sched2.load_state_dict(saved["scheduler"])
    rest = trace(opt2, sched2, STEPS - 12, ("lr", "momentum"))
    np.testing.assert_array_equal(np.concatenate([first, rest[1:]]), full)
    assert sched2.get_last_lr() == [g["lr"] for g in opt2.param_groups]


def test_scheduler_state_dict_leaves_out_the_optimizer():
    opt, _ = optimizers()
    sd = lr_scheduler.CosineAnnealingLR(opt, T_max=5).state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 0 and sd["base_lrs"] == [0.1, 0.05]


def test_onecycle_errors():
    opt, _ = optimizers()
    with pytest.raises(ValueError, match="total_steps"):
        lr_scheduler.OneCycleLR(opt, max_lr=1.0)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=2)
    sched.step()
    sched.step()
    with pytest.raises(ValueError, match="Tried to step 3 times"):
        sched.step()


def test_sequential_lr_checks_its_arguments():
    opt, _ = optimizers()
    other, _ = optimizers()
    a = lr_scheduler.LinearLR(opt, total_iters=2)
    with pytest.raises(ValueError, match="milestone"):
        lr_scheduler.SequentialLR(opt, [a, lr_scheduler.StepLR(opt, 3)], milestones=[])
    with pytest.raises(ValueError, match="same optimizer"):
        lr_scheduler.SequentialLR(opt, [a, lr_scheduler.StepLR(other, 3)], milestones=[2])
