"""Stochastic gradient descent, with momentum, Nesterov momentum and weight decay."""
from ..autograd.graph import increment_version
from ..creation import zeros_like
from .optimizer import Optimizer


class SGD(Optimizer):
    r"""PyTorch's SGD. For each parameter p with gradient g:

        g = g + weight_decay * p                        (L2 penalty)
        buf = g                           on the first step,
        buf = momentum * buf + (1 - dampening) * g      after
        g = g + momentum * buf  if nesterov  else  buf
        p = p - lr * g
    """
    capturable = True  # its hyperparameters are read from the device (`_step_scalars`)

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def prepare_step(self):
        self._updates = []
        for i, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            scalars = self._step_scalars(i, params[0]._backend, [group["lr"], group["momentum"],
                                                                 group["dampening"], group["weight_decay"]])
            if not group["momentum"]:
                self._updates.append(self._update(group, params, scalars, [None] * len(params), False))
                continue
            # parameters with a momentum buffer already, and those stepping for the first time
            # (a buffer starts as the gradient itself, so those take a separate call)
            old = [p for p in params if "momentum_buffer" in self.state.get(p, {})]
            new = [p for p in params if "momentum_buffer" not in self.state.get(p, {})]
            for p in new:
                self.state.setdefault(p, {})["momentum_buffer"] = zeros_like(p)
            for subset, first in ((old, False), (new, True)):
                if subset:
                    bufs = [self.state[p]["momentum_buffer"]._data for p in subset]
                    self._updates.append(self._update(group, subset, scalars, bufs, first))

    @staticmethod
    def _update(group, params, scalars, bufs, first_step):
        """One fused backend call over the raw arrays of `params` (their gradients
        are read when it runs)."""
        has_weight_decay, nesterov = bool(group["weight_decay"]), group["nesterov"]

        def update(skip=None):
            params[0]._backend.sgd_update([p._data for p in params], [p.grad._data for p in params], bufs,
                                          scalars, has_weight_decay, nesterov, first_step, skip)
            increment_version(params)
        return update
