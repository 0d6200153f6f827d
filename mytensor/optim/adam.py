"""Adam and AdamW: per-parameter step sizes from running moments of the gradient."""
import math

from ..autograd.graph import increment_version
from ..creation import zeros_like
from .optimizer import Optimizer


class Adam(Optimizer):
    r"""PyTorch's Adam (Kingma & Ba, 2015). For each parameter p with gradient g, at step t:

        g = g + weight_decay * p                  (Adam: L2 penalty through the gradient)
        m = beta1 * m + (1 - beta1) * g           (running mean of g)
        v = beta2 * v + (1 - beta2) * g^2         (running mean of g^2)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)

    Dividing by sqrt(v) gives every weight a step of about lr, whatever the
    scale of its gradient; the (1 - beta^t) terms undo the bias of m and v
    towards their zero start.
    """
    capturable = True  # its hyperparameters are read from the device (`_step_scalars`)

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def prepare_step(self):
        self._updates = []
        for i, group in enumerate(self.param_groups):
            by_step = {}  # parameters at the same step count share one backend call
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0
                    state["exp_avg"], state["exp_avg_sq"] = zeros_like(p), zeros_like(p)
                state["step"] += 1  # a host int: no device round trip
                by_step.setdefault(state["step"], []).append(p)
            for j, (step, params) in enumerate(sorted(by_step.items())):
                scalars = self._step_scalars((i, j), params[0]._backend, adam_scalars(group, step))
                self._updates.append(self._update(group, params, scalars))

    def _update(self, group, params, scalars):
        """One fused backend call over the raw arrays of `params` (their gradients
        are read when it runs)."""
        states = [self.state[p] for p in params]
        has_weight_decay, decoupled = bool(group["weight_decay"]), self.decoupled_weight_decay

        def update(skip=None):
            params[0]._backend.adam_update(
                [p._data for p in params], [p.grad._data for p in params],
                [s["exp_avg"]._data for s in states], [s["exp_avg_sq"]._data for s in states],
                scalars, has_weight_decay, decoupled, skip)
            increment_version(params)
        return update


def adam_scalars(group, step):
    """The hyperparameters of an Adam step at `step` (from 1), as the update reads them:
    lr/bc1, beta1, beta2, sqrt(bc2), eps, weight_decay, 1 - lr*weight_decay, where
    bc = 1 - beta^step corrects the moments' bias towards their zero start."""
    lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
    return [lr / (1 - beta1 ** step), beta1, beta2, math.sqrt(1 - beta2 ** step), group["eps"], wd, 1 - lr * wd]


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019): instead of
    adding weight_decay * p to the gradient (where Adam's normalisation would
    rescale it), shrink the weights directly, p = p * (1 - lr * weight_decay),
    before the Adam step."""
    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
