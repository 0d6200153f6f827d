"""Adam and AdamW: per-parameter step sizes from running moments of the gradient."""
from ..tensor import Tensor
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

    def step(self):
        for group in self.param_groups:
            by_step = {}  # parameters at the same step count share one backend call
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {})
                if not state:
                    zeros = p._backend.xp.zeros_like
                    state["step"] = 0
                    state["exp_avg"] = Tensor._wrap(zeros(p._data), p._backend)
                    state["exp_avg_sq"] = Tensor._wrap(zeros(p._data), p._backend)
                state["step"] += 1  # a host int: no device round trip
                by_step.setdefault(state["step"], []).append(p)
            beta1, beta2 = group["betas"]
            for step, params in by_step.items():
                states = [self.state[p] for p in params]
                params[0]._backend.adam_update(
                    [p._data for p in params], [p.grad._data for p in params],
                    [s["exp_avg"]._data for s in states], [s["exp_avg_sq"]._data for s in states],
                    step=step, lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                    weight_decay=group["weight_decay"], decoupled=self.decoupled_weight_decay)
                for p in params:
                    p._version[0] += 1


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019): instead of
    adding weight_decay * p to the gradient (where Adam's normalisation would
    rescale it), shrink the weights directly, p = p * (1 - lr * weight_decay),
    before the Adam step."""
    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
