"""Lookahead's slow weights, step by step against the rule written out, and its checkpoint round trip."""
import numpy as np

import mytensor as mt
from mytensor import nn, optim


def model():
    mt.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def floats(m):
    """The values Lookahead follows: trainable parameters, then floating buffers."""
    return [p.detach().numpy().copy() for p in m.parameters()] + \
        [b.numpy().copy() for b in m.buffers() if b.is_floating_point()]


def train_step(m, opt, x):
    m(x).pow(2).mean().backward()
    opt.step()
    opt.zero_grad()


def test_every_kth_step_pulls_the_slow_weights_and_restarts_the_model_from_them():
    m = model()
    m[1].weight.requires_grad_(False)  # frozen: not followed
    opt = optim.SGD(m.parameters(), lr=0.1)
    alphas = {3: 0.25, 6: 0.75}
    look = optim.Lookahead(m, k=3, alpha=lambda step: alphas[step])
    assert len(look.tensors) == 5  # linear weight and bias, BN bias, running mean and var (not the step count)
    slow = floats(m)
    x = mt.randn(8, 3)
    for step in range(1, 7):
        train_step(m, opt, x)
        fast = floats(m)
        look.step()
        if step % 3:
            assert all(np.array_equal(a, b) for a, b in zip(floats(m), fast))
            continue
        slow = [s + alphas[step] * (f - s) for s, f in zip(slow, fast)]
        for got, want in zip(floats(m), slow):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_finish_gives_the_model_the_slow_weights_and_state_round_trips():
    m = model()
    opt = optim.SGD(m.parameters(), lr=0.1)
    look = optim.Lookahead(m, k=2, alpha=0.5)
    x = mt.randn(8, 3)
    for _ in range(3):
        train_step(m, opt, x)
        look.step()
    state = look.state_dict()
    assert state["steps"] == 3
    slow = [s.numpy().copy() for s in look.slow]
    look.finish()
    assert all(np.array_equal(a, b) for a, b in zip(floats(m), slow))
    other = optim.Lookahead(model(), k=2, alpha=0.5)
    other.load_state_dict(state)
    assert other.steps == 3 and all(np.array_equal(a.numpy(), b) for a, b in zip(other.slow, slow))
