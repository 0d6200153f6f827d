"""`Module`: the base class of every layer and network.

A module keeps three ordered tables, filled simply by assigning attributes:

    self.weight = Parameter(...)        -> _parameters  (trained by the optimizer)
    self.register_buffer("mean", t)     -> _buffers     (state that is saved, not trained)
    self.conv = Conv2d(...)             -> _modules     (child modules, searched recursively)

Everything else (`parameters()`, `state_dict()`, `to(device)`, `train()`,
the printed tree) is a walk over these tables.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from ... import dtypes
from ...autograd.engine import zero_grads
from ...autograd.grad_mode import no_grad
from ...autograd.graph import increment_version
from ...backend import to_host
from ...tensor import Tensor
from ...tensor_methods import parse_to
from ..parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class _RemovableHandle:
    """What register_*_hook returns: `remove()` unregisters the hook."""
    _next_id = 0

    def __init__(self, table, hook):
        self.table, self.id = table, _RemovableHandle._next_id
        _RemovableHandle._next_id += 1
        table[self.id] = hook

    def remove(self):
        self.table.pop(self.id, None)


class Module:
    def __init__(self):
        # object.__setattr__ because our own __setattr__ needs these tables to exist
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args, **kwargs):
        if "_forward_hooks" not in self.__dict__:  # no hook was ever registered: the common, fast case
            return self.forward(*args, **kwargs)
        for hook in list(self._forward_pre_hooks.values()):
            changed = hook(self, args)
            if changed is not None:
                args = changed if isinstance(changed, tuple) else (changed,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            changed = hook(self, args, output)
            if changed is not None:
                output = changed
        return output

    def _has_forward_hooks(self):
        """Whether a forward (pre-)hook is registered: then the module must run on its own."""
        return bool(self.__dict__.get("_forward_hooks")) or bool(self.__dict__.get("_forward_pre_hooks"))

    def _hooks(self):
        if "_forward_hooks" not in self.__dict__:
            object.__setattr__(self, "_forward_hooks", OrderedDict())
            object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        return self._forward_pre_hooks, self._forward_hooks

    def register_forward_pre_hook(self, hook):
        """Call `hook(module, args)` before forward; a returned value replaces the arguments."""
        return _RemovableHandle(self._hooks()[0], hook)

    def register_forward_hook(self, hook):
        """Call `hook(module, args, output)` after forward; a returned value replaces the output."""
        return _RemovableHandle(self._hooks()[1], hook)

    # ----------------------------------------------------------- registration
    def _tables(self):
        tables = self.__dict__.get("_parameters"), self.__dict__.get("_buffers"), self.__dict__.get("_modules")
        if tables[0] is None:
            raise AttributeError(f"cannot assign to a {type(self).__name__} before Module.__init__() has run: "
                                 f"call super().__init__() first in your __init__")
        return tables

    def _forget(self, name, keep=None):
        """Remove `name` from every table but `keep` (where an existing entry is
        then replaced in place, keeping its position), so one name means one thing."""
        for table in self._tables():
            if table is not keep:
                table.pop(name, None)
        self._non_persistent_buffers.discard(name)
        self.__dict__.pop(name, None)

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self.add_module(name, value)
        else:
            params, buffers, modules = self.__dict__.get("_parameters"), self.__dict__.get("_buffers"), \
                self.__dict__.get("_modules")
            if params is not None and name in params:
                if value is not None:
                    raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                    f"(nn.Parameter or None expected)")
                params[name] = None
            elif modules is not None and name in modules:
                if value is not None:
                    raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                    f"(nn.Module or None expected)")
                modules[name] = None
            elif buffers is not None and name in buffers:
                if value is not None and not isinstance(value, Tensor):
                    raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                    f"(Tensor or None expected)")
                buffers[name] = value
            else:
                object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # only called when normal lookup fails: look in the tables
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        params, buffers, modules = self._tables()
        if name in params or name in buffers or name in modules:
            self._forget(name)
        else:
            object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Add a parameter (or None, a declared-but-absent one such as a missing bias)."""
        self._check_name(name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' as parameter '{name}' (nn.Parameter or "
                            f"None expected); wrap a tensor in nn.Parameter(...) to make it trainable")
        self._forget(name, keep=self._parameters)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Add a tensor that is part of the module's state but not trained
        (BatchNorm's running statistics). Non-persistent buffers are left out
        of `state_dict()`."""
        self._check_name(name)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' as buffer '{name}' (Tensor or None expected)")
        self._forget(name, keep=self._buffers)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        self._check_name(name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._forget(name, keep=self._modules)
        self._modules[name] = module

    register_module = add_module

    def _check_name(self, name):
        self._tables()
        if not isinstance(name, str):
            raise TypeError(f"attribute name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"attribute name can't contain '.' or be empty, got {name!r}")

    # --------------------------------------------------------------- traversal
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """This module and all below it, depth first, each once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, table, prefix, recurse, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(name, parameter) pairs; a parameter shared by two layers is listed once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target):
        module = self
        for part in target.split(".") if target else []:
            if part not in module._modules:
                raise AttributeError(f"{type(module).__name__} has no submodule `{part}` (looking for {target!r})")
            module = module._modules[part]
        return module

    def apply(self, fn):
        """Call `fn` on every submodule (children first) and on self; used for custom init."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------ modes, grads
    def train(self, mode=True):
        """Training mode (Dropout drops, BatchNorm uses batch statistics) or not."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be a bool")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        zero_grads(self.parameters(), set_to_none)

    # ------------------------------------------------------------- state dict
    def _state_entries(self):
        """name -> tensor for everything `state_dict` saves, in PyTorch's order:
        a module's own parameters, then its buffers, then its children's."""
        entries = OrderedDict()
        for prefix, module in self.named_modules(remove_duplicate=False):
            for name, p in module._parameters.items():
                if p is not None:
                    entries[prefix + ("." if prefix else "") + name] = p
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent_buffers:
                    entries[prefix + ("." if prefix else "") + name] = b
        return entries

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Every parameter and persistent buffer by dotted name.

        The values are NumPy copies (unless keep_vars=True, which gives the
        tensors themselves): a snapshot that training won't change afterwards,
        that pickles without any device, and that loads onto CPU or GPU alike.
        """
        destination = OrderedDict() if destination is None else destination
        for name, t in self._state_entries().items():
            destination[prefix + name] = t if keep_vars else np.array(to_host(t._data), copy=True)
        return destination

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into the existing parameters and buffers, in place (so an
        optimizer that holds them keeps working). Checks everything before
        writing anything: with strict=True missing or unexpected keys are an
        error; a shape mismatch always is."""
        entries = self._state_entries()
        missing = [k for k in entries if k not in state_dict]
        unexpected = [k for k in state_dict if k not in entries]
        errors = []
        for name, t in entries.items():
            if name in state_dict:
                shape = tuple(np.shape(state_dict[name])) if not isinstance(state_dict[name], Tensor) \
                    else tuple(state_dict[name].shape)
                if shape != t.shape:
                    errors.append(f"size mismatch for {name}: copying a param with shape {shape} from checkpoint, "
                                  f"the shape in current model is {tuple(t.shape)}.")
        if strict and unexpected:
            errors.insert(0, "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            errors.insert(0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
        for name, t in entries.items():
            if name in state_dict:
                _write_into(t, state_dict[name])
        return IncompatibleKeys(missing, unexpected)

    # ---------------------------------------------------------------- devices
    def to(self, *args, memory_format=None, **kwargs):
        """Move (and/or cast) every parameter and buffer in place: the same
        Parameter objects get new storage, so optimizers built before still
        hold them. Only floating-point tensors change dtype; `memory_format`
        (mytensor.channels_last) lays out the 4-D ones anew, as in PyTorch."""
        device, dtype, _ = parse_to(*args, **kwargs)
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"Module.to() only accepts floating point dtypes, got {dtype}")
        seen = set()
        for module in self.modules():
            for t in (*module._parameters.values(), *module._buffers.values()):
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                _convert_in_place(t, device, dtype, memory_format)
                if t.grad is not None:
                    _convert_in_place(t.grad, device, dtype, memory_format)
        return self

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{device}")

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def bfloat16(self):
        return self.to(dtypes.bfloat16)

    # -------------------------------------------------------------------- repr
    def extra_repr(self):
        """The text inside the parentheses of this module's line (override it)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, module in self._modules.items():
            lines.append(f"({name}): " + _indent(repr(module), 2))
        if not lines:
            return self._get_name() + "()"
        if len(lines) == 1 and not self._modules:
            return f"{self._get_name()}({lines[0]})"
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))


def _indent(text, spaces):
    """Indent every line but the first (the first follows '(name): ')."""
    first, *rest = text.split("\n")
    return "\n".join([first] + [" " * spaces + line for line in rest])


def _convert_in_place(t, device, dtype, memory_format=None):
    """Give tensor `t` its data on `device` / in `dtype` (/ in `memory_format`, if 4-D) without
    replacing the object."""
    new_dtype = dtype if dtype is not None and t.is_floating_point() else None
    with no_grad():
        moved = t.detach().to(device=device, dtype=new_dtype)
        if memory_format is not None and t.ndim == 4:
            moved = moved.contiguous(memory_format)
    if moved._data is not t._data:
        t._data, t._backend = moved._data, moved._backend
        increment_version(t)


def _write_into(t, value):
    """Copy `value` (a Tensor, NumPy/CuPy array or nested list) into tensor `t` in place."""
    if isinstance(value, Tensor):  # across devices: through the host
        value = value._data if value._backend is t._backend else to_host(value._data)
    elif t._backend.name == "cpu":
        value = to_host(value)
    t._backend.xp.copyto(t._data, t._backend.asarray(value, dtype=t._data.dtype), casting="unsafe")
    increment_version(t)
