"""RMSprop, Adagrad and Adadelta: per-element step sizes from running averages of squared gradients.

Written with generic array math, one parameter at a time, on NumPy or CuPy alike (no
fused kernel: these are less used than SGD and Adam). Each matches PyTorch's update
step for step; the formulas are in each class's docstring.
"""
from ..autograd.graph import increment_version
from ..creation import full_like, zeros_like
from ..tensor import Tensor
from .optimizer import Optimizer

_ACCEPTED = ("foreach", "maximize", "capturable", "differentiable", "fused")  # PyTorch's implementation switches


class _PerParameter(Optimizer):
    """Shared bookkeeping: per parameter, `_init_state` once, then `_update(p, g, state, group)` on raw arrays."""

    def __init__(self, params, defaults, options):
        for name, value in options.items():
            if name not in _ACCEPTED:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {name!r}")
        self.maximize = bool(options.get("maximize", False))
        super().__init__(params, defaults)

    def prepare_step(self):
        self._updates = []
        for group in self.param_groups:
            settings = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {})
                if not state:
                    self._init_state(p, state, settings)
                state["step"] = state.get("step", 0) + 1
                self._updates.append(self._launch(p, state, settings))

    def _launch(self, p, state, settings):
        def update(skip=None):
            g = -p.grad._data if self.maximize else p.grad._data
            if settings["weight_decay"]:
                g = g + settings["weight_decay"] * p._data
            arrays = {k: v._data if isinstance(v, Tensor) else v for k, v in state.items()}
            p._backend.unless_flag(skip, [p._data] + [a for a in arrays.values() if hasattr(a, "shape")],
                                   lambda: self._update(p._data, g, arrays, settings))
            increment_version(p)
        return update


def _check(name, value, low=0.0):
    if not value >= low:
        raise ValueError(f"Invalid {name} value: {value}")


class RMSprop(_PerParameter):
    r"""g = grad + weight_decay * p;  v = alpha * v + (1 - alpha) * g^2
    centered: m = alpha * m + (1 - alpha) * g, avg = sqrt(v - m^2) + eps;  else avg = sqrt(v) + eps
    momentum: buf = momentum * buf + g / avg, p -= lr * buf;  else p -= lr * g / avg"""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 **options):
        for name, value in (("learning rate", lr), ("epsilon", eps), ("momentum", momentum),
                            ("weight_decay", weight_decay), ("alpha", alpha)):
            _check(name, value)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered), options)

    def _init_state(self, p, state, s):
        state["square_avg"] = zeros_like(p)
        if s["momentum"] > 0:
            state["momentum_buffer"] = zeros_like(p)
        if s["centered"]:
            state["grad_avg"] = zeros_like(p)

    @staticmethod
    def _update(p, g, state, s):
        alpha, v = s["alpha"], state["square_avg"]
        v *= alpha
        v += (1 - alpha) * g * g
        if s["centered"]:
            m = state["grad_avg"]
            m *= alpha
            m += (1 - alpha) * g
            avg = (v - m * m) ** 0.5 + s["eps"]
        else:
            avg = v ** 0.5 + s["eps"]
        if s["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= s["momentum"]
            buf += g / avg
            p -= s["lr"] * buf
        else:
            p -= s["lr"] * (g / avg)


class Adagrad(_PerParameter):
    r"""g = grad + weight_decay * p;  clr = lr / (1 + (step - 1) * lr_decay)
    sum += g^2;  p -= clr * g / (sqrt(sum) + eps)"""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 **options):
        for name, value in (("learning rate", lr), ("lr_decay", lr_decay), ("weight_decay", weight_decay),
                            ("initial_accumulator_value", initial_accumulator_value), ("epsilon", eps)):
            _check(name, value)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                      initial_accumulator_value=initial_accumulator_value), options)

    def _init_state(self, p, state, s):
        state["sum"] = full_like(p, s["initial_accumulator_value"])

    @staticmethod
    def _update(p, g, state, s):
        clr = s["lr"] / (1 + (state["step"] - 1) * s["lr_decay"])
        acc = state["sum"]
        acc += g * g
        p -= clr * (g / (acc ** 0.5 + s["eps"]))


class Adadelta(_PerParameter):
    r"""g = grad + weight_decay * p;  v = rho * v + (1 - rho) * g^2
    delta = sqrt(u + eps) / sqrt(v + eps) * g;  u = rho * u + (1 - rho) * delta^2;  p -= lr * delta"""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, **options):
        for name, value in (("learning rate", lr), ("epsilon", eps), ("weight_decay", weight_decay)):
            _check(name, value)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay), options)

    def _init_state(self, p, state, s):
        state["square_avg"], state["acc_delta"] = zeros_like(p), zeros_like(p)

    @staticmethod
    def _update(p, g, state, s):
        rho, eps, v, u = s["rho"], s["eps"], state["square_avg"], state["acc_delta"]
        v *= rho
        v += (1 - rho) * g * g
        delta = (u + eps) ** 0.5 / (v + eps) ** 0.5 * g
        u *= rho
        u += (1 - rho) * delta * delta
        p -= s["lr"] * delta
