"""`Optimizer`: what every optimizer shares -- parameter groups, per-parameter
state, `zero_grad`, the two halves of a step, and saving/restoring state.

A *parameter group* is a dict: {"params": [...], "lr": ..., other settings}.
Groups let one optimizer train parts of a model with different settings.

A step has a host half and a device half. `prepare_step()` does the
bookkeeping (step counts, new state) and writes the step's hyperparameters
(learning rate, bias corrections, ...) into small arrays in device memory;
`apply_step()` launches the updates, one backend call over the raw arrays of
all the parameters of a group, which read those arrays. Nothing in the device
half changes from step to step, so it can be captured in a CUDA graph and
replayed after each `prepare_step()`. Neither half reads a value back from
the device.
"""
import contextlib
import copy

import numpy as np

from .. import memory_formats
from ..autograd.engine import zero_grads
from ..backend import to_host
from ..tensor import Tensor


_stepping = []  # lists collecting the optimizers that apply a step (see `stepped`)


@contextlib.contextmanager
def stepped():
    """The optimizers that apply a step inside the block, in order (`mytensor.cuda.graphed` asks, to
    run their host halves before each replay)."""
    found = []
    _stepping.append(found)
    try:
        yield found
    finally:
        _stepping.remove(found)


class Optimizer:
    # whether a CUDA graph can replay `apply_step`: every hyperparameter that can change between
    # steps is read from device memory that `prepare_step` writes (`_step_scalars`), not baked
    # into the launches
    capturable = False

    def __init__(self, params, defaults):
        self.defaults = defaults
        self.state = {}  # parameter -> dict of its state (tensors hash by identity)
        self.param_groups = []
        self._updates = []  # what `apply_step` launches, set by `prepare_step`
        self._scalars = {}  # key -> (device array of a step's hyperparameters, the values written)
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            "but got a Tensor (use [tensor] or model.parameters())")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Add a group; settings it doesn't give come from the optimizer's defaults."""
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (it is the result of an op; optimize the "
                                 "tensor it was computed from)")
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        known = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in known for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self):
        """One update of every parameter that has a gradient."""
        self.prepare_step()
        self.apply_step()

    def prepare_step(self):
        """The host half of a step: a subclass sets `self._updates` to the callables
        that launch this step's updates."""
        raise NotImplementedError

    def apply_step(self, found_inf=None):
        """The device half of a step: the launches `prepare_step` chose. With `found_inf`
        (a device scalar, `amp.GradScaler`'s), the updates leave everything as it was
        when it is not 0: the step is skipped without the host ever reading the flag."""
        for found in _stepping:
            if not any(o is self for o in found):
                found.append(self)
        for update in self._updates:
            update(found_inf)

    def _step_scalars(self, key, backend, values):
        """The device array holding `values` for the update `key`. Each key keeps its
        array, so a captured update reads the same memory at every replay; it is
        rewritten only when the values change (a constant learning rate costs nothing)."""
        array, written = self._scalars.get(key, (None, None))
        if values != written:
            array = backend.write_scalars(values, array)
            self._scalars[key] = (array, values)
        return array

    # ------------------------------------------------------------ state dict
    def state_dict(self):
        """{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]},
        PyTorch's layout. Parameters are referred to by their position across
        groups, and state arrays are NumPy copies, so the dict pickles without
        any device and loads back onto CPU or GPU."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: _to_host(v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore settings and state saved by `state_dict()` into this
        optimizer, whose groups must hold parameters of the same shapes."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"parameter group {i} has {len(group['params'])} parameters, but the loaded "
                                 f"state dict's group has {len(saved['params'])}")
        by_index = {}
        for group, saved in zip(self.param_groups, saved_groups):
            by_index.update(zip(saved["params"], group["params"]))
        new_state = {}
        for idx, entries in state_dict["state"].items():
            p = by_index[idx]
            new_state[p] = {k: _to_param_device(v, p, k) for k, v in entries.items()}
        for group, saved in zip(self.param_groups, saved_groups):
            group.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
        self.state = new_state

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def _to_host(value):
    """A backend array becomes a NumPy copy; Python numbers stay as they are."""
    if isinstance(value, Tensor):
        value = value._data
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return np.array(to_host(value), copy=True)
    return copy.deepcopy(value)


def _to_param_device(value, param, name):
    """A saved array goes back to the parameter's device (and, being state of
    that parameter, its dtype); numbers (step counts) stay as they are."""
    if isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__"):
        if tuple(value.shape) != param.shape:
            raise ValueError(f"state '{name}' has shape {tuple(value.shape)}, but its parameter has shape "
                             f"{tuple(param.shape)}")
        t = Tensor(value, dtype=param.dtype, device=param.device)
        return t.to(memory_format=memory_formats.of(param._data))  # laid out as its parameter, as it was made
    return copy.deepcopy(value)
