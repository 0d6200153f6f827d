"""`GradScaler`: dynamic loss scaling for float16 training, as `torch.amp.GradScaler`.

float16 gradients smaller than about 6e-8 flush to zero. Multiplying the loss by a
large scale S before backward lifts them into range; the gradients are divided by S
again before the optimizer uses them:

    scaler = mt.amp.GradScaler()
    with mt.autocast("cuda", dtype=mt.float16):
        loss = F.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)      # unscales; skips the step if a gradient is inf or nan
    scaler.update()             # S halves after such a step, doubles after `growth_interval` good ones

Unlike PyTorch's default scaler, nothing here reads a value back from the GPU: the
scale, the growth tracker and the found-inf flag live in device memory, the
optimizer's update kernels skip themselves when the flag is set, and the scale is
updated by device ops. A whole scaled training step can so be captured in a CUDA
graph. (A skipped step still counts in Adam's step number, which PyTorch's does not:
the bias correction then runs one step ahead, a difference that fades within a few
hundred steps.)
"""
from .. import dtypes
from ..backend import get_backend
from ..creation import full
from ..tensor import Tensor

_READY, _UNSCALED, _STEPPED = 0, 1, 2


class GradScaler:
    def __init__(self, device="cuda", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        if growth_factor <= 1.0:
            raise ValueError(f"GradScaler: growth_factor must be above 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor must be between 0 and 1, got {backoff_factor}")
        if growth_interval < 1 or int(growth_interval) != growth_interval:
            raise ValueError(f"GradScaler: growth_interval must be a positive whole number, got {growth_interval}")
        self.device = device
        self._init_scale, self._growth_factor, self._backoff_factor = float(init_scale), growth_factor, backoff_factor
        self._growth_interval = int(growth_interval)
        self._init_tracker = 0
        self._enabled = enabled
        self._scale = self._tracker = None  # device scalars, made on first use on the loss's device
        self._per_optimizer = {}  # id(optimizer) -> {"stage": ..., "found_inf": device scalar}

    def is_enabled(self):
        return self._enabled

    # ------------------------------------------------------------------ the step
    def _state(self, backend):
        if self._scale is None:
            self._scale = full((), self._init_scale, dtype=dtypes.float32, device=backend.device)
            self._tracker = full((), self._init_tracker, dtype=dtypes.int32, device=backend.device)
        return self._scale

    def scale(self, outputs):
        """outputs * S (a tensor, or a list/tuple of them)."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if not isinstance(outputs, Tensor):
            raise TypeError(f"GradScaler.scale expects a tensor, got {type(outputs).__name__}")
        return outputs * self._state(outputs._backend).to(outputs.dtype)

    def _optimizer_state(self, optimizer):
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": None})

    def unscale_(self, optimizer):
        """Divide the gradients of `optimizer`'s parameters by S in place and note, on the
        device, whether any is inf or nan (call it before clipping gradients)."""
        if not self._enabled:
            return
        state = self._optimizer_state(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update()")
        if state["stage"] == _STEPPED:
            raise RuntimeError("unscale_() is being called after step()")
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        backend = grads[0]._backend if grads else get_backend(self.device)
        scale = self._state(backend)._data
        state["found_inf"] = backend.unscale_grads([g._data for g in grads], 1 / scale)
        state["stage"] = _UNSCALED

    def step(self, optimizer):
        """`optimizer.step()`, skipped on the device if the gradients held an inf or nan."""
        if not self._enabled:
            return optimizer.step()
        optimizer.prepare_step()
        self.apply_step(optimizer)

    def apply_step(self, optimizer):
        """The device half of `step` (after `optimizer.prepare_step()`): what a CUDA graph records."""
        state = self._optimizer_state(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("step() has already been called since the last update()")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        optimizer.apply_step(found_inf=state["found_inf"])
        state["stage"] = _STEPPED

    def update(self, new_scale=None):
        """The scale for the next step: S * backoff_factor after a step with inf/nan gradients,
        S * growth_factor after growth_interval steps without, else S (all on the device)."""
        if not self._enabled or self._scale is None:
            return
        backend = self._scale._backend
        if new_scale is not None:
            value = new_scale._data if isinstance(new_scale, Tensor) else float(new_scale)
            self._scale._data[...] = value
        else:
            flags = [s["found_inf"] for s in self._per_optimizer.values() if s["found_inf"] is not None]
            if not flags:
                raise RuntimeError("update() needs at least one step() or unscale_() since the last update()")
            found = flags[0]
            for f in flags[1:]:
                found = found + f
            backend.update_loss_scale(self._scale._data, self._tracker._data, found, self._growth_factor,
                                      self._backoff_factor, self._growth_interval)
        self._per_optimizer = {}

    # ------------------------------------------------------------ inspection
    def get_scale(self):
        """S as a Python float (this one waits for the device)."""
        return float(self._scale.item()) if self._scale is not None else self._init_scale

    def get_growth_factor(self):
        return self._growth_factor

    def get_backoff_factor(self):
        return self._backoff_factor

    def get_growth_interval(self):
        return self._growth_interval

    def state_dict(self):
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": int(self._tracker.item()) if self._tracker is not None else self._init_tracker}

    def load_state_dict(self, state_dict):
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError("the state_dict is empty: it came from a disabled GradScaler")
        self._init_scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        if self._scale is not None:
            self._scale._data[...] = self._init_scale
            self._tracker._data[...] = int(state_dict["_growth_tracker"])
        else:
            self._init_tracker = int(state_dict["_growth_tracker"])

    def __repr__(self):
        return (f"GradScaler(init_scale={self._init_scale}, growth_factor={self._growth_factor}, "
                f"backoff_factor={self._backoff_factor}, growth_interval={self._growth_interval}, "
                f"enabled={self._enabled})")

