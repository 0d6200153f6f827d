"""Muon: momentum whose update is orthogonalised, every direction of a weight matrix getting about
the same step (Keller Jordan, 2024; PyTorch's `torch.optim.Muon`)."""
import math

from ..autograd.graph import increment_version
from ..creation import zeros_like
from .optimizer import Optimizer

ADJUST_LR = (None, "original", "match_rms_adamw")


def lr_ratio(adjust_lr_fn, rows, cols):
    """The factor on the lr that evens out the update's RMS across matrix shapes (PyTorch's)."""
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1, rows / cols))


class Muon(Optimizer):
    r"""PyTorch's Muon. For each weight matrix W with gradient G:

        B = B + (1 - momentum) * (G - B)                          (B starts at 0)
        U = G + momentum * (B - G)   if nesterov   else   B
        O = NS(U): U / |U|, then ns_steps of X = a X + (b A + c A A) X, A = X X^T (bfloat16 products)
        W = W * sqrt(rows) / |W|                                  (with normalize_weights)
        W = W * (1 - lr * weight_decay) - lr * ratio * O

    O is about U's orthogonal factor (see `backend.newton_schulz`): the momentum's direction with
    its singular values evened out, so rare directions are not drowned by common ones. ratio is
    sqrt(max(1, rows / cols)) (adjust_lr_fn None or "original") or 0.2 sqrt(max(rows, cols))
    ("match_rms_adamw"). A parameter of more than two dimensions (convolution filters) is
    orthogonalised as the matrix (shape[0], the rest), as in Keller Jordan's CIFAR-10 Muon;
    PyTorch's takes matrices only. Biases and gains belong to another optimizer, as in PyTorch.

    normalize_weights (not PyTorch's; Keller Jordan's CIFAR-10 Muon) rescales each weight to the
    Frobenius norm sqrt(rows) before its update. A weight followed by batch norm computes the same
    function at any scale, but the scale sets how far a step of size lr turns it: held fixed, the
    lr and its schedule alone set that, however the weight would have grown.
    """
    capturable = True  # its hyperparameters are read from the device (`_step_scalars`)

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-7, ns_steps=5, adjust_lr_fn=None,
                 normalize_weights=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"lr, momentum and weight_decay must be 0 or more, got {lr}, {momentum}, {weight_decay}")
        if adjust_lr_fn not in ADJUST_LR:
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        if ns_steps >= 100 or len(ns_coefficients) != 3:
            raise ValueError("ns_steps must be below 100 and ns_coefficients three numbers")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      ns_coefficients=tuple(ns_coefficients), eps=eps, ns_steps=ns_steps,
                                      adjust_lr_fn=adjust_lr_fn, normalize_weights=normalize_weights))
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim < 2:
                    raise ValueError(f"Muon optimizes weights of 2 or more dimensions, not of shape {tuple(p.shape)}")

    def prepare_step(self):
        self._updates = []
        for i, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                state = self.state.setdefault(p, {})
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = zeros_like(p)
            scalars = self._step_scalars(i, params[0]._backend, [group["lr"], group["momentum"],
                                                                 group["weight_decay"]])
            self._updates.append(self._update(group, params, scalars))

    def _update(self, group, params, scalars):
        """One backend call over the raw arrays of `params` (their gradients are read when it runs)."""
        bufs = [self.state[p]["momentum_buffer"]._data for p in params]
        ratios = [lr_ratio(group["adjust_lr_fn"], p.shape[0], p.numel() // p.shape[0]) for p in params]

        def update(skip=None):
            params[0]._backend.muon_update([p._data for p in params], [p.grad._data for p in params], bufs, scalars,
                                           ratios, group["nesterov"], group["ns_coefficients"], group["ns_steps"],
                                           group["eps"], group["normalize_weights"], skip)
            increment_version(params)
        return update
