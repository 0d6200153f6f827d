"""Containers: `Sequential` (run children in order), `ModuleList` and
`ModuleDict` (hold children so their parameters are registered)."""
from collections import OrderedDict

from .activation import GELU, ReLU
from .batchnorm import _BatchNorm
from .module import Module


class Sequential(Module):
    """Sequential(a, b, c)(x) == c(b(a(x))). Children are named "0", "1", ...
    unless given as an OrderedDict of names."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def _index(self, idx):
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for a {type(self).__name__} of length {n}")
        return idx % n

    def __getitem__(self, idx):
        if isinstance(idx, slice):  # a plain Sequential, whatever subclass self is
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[self._index(idx)]

    def __setitem__(self, idx, module):
        key = list(self._modules.keys())[self._index(idx)]
        self.add_module(key, module)

    def __delitem__(self, idx):
        keys = list(self._modules.keys())
        for key in (keys[idx] if isinstance(idx, slice) else [keys[self._index(idx)]]):
            del self._modules[key]
        # keep the names 0, 1, 2, ... contiguous, as PyTorch does
        self.__dict__["_modules"] = OrderedDict((str(i), m) for i, m in enumerate(self._modules.values()))

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def forward(self, input):
        """Each child in turn; a BatchNorm followed by a ReLU or a GELU (neither hooked nor
        overridden) runs as one fused op, `BatchNorm.forward_activated`, with the same result."""
        modules, i = list(self._modules.values()), 0
        while i < len(modules):
            if i + 1 < len(modules) and _fusable_batch_norm_activation(modules[i], modules[i + 1]):
                input, i = modules[i].forward_activated(input, modules[i + 1]), i + 2
            else:
                input, i = modules[i](input), i + 1
        return input


def _fusable_batch_norm_activation(first, second):
    return (isinstance(first, _BatchNorm) and type(first).forward is _BatchNorm.forward
            and type(second) in (ReLU, GELU) and not first._has_forward_hooks() and not second._has_forward_hooks())


def batch_norm_activation(batch_norm, activation, input):
    """activation(batch_norm(input)) for a model's own forward, fused as nn.Sequential fuses the pair."""
    if _fusable_batch_norm_activation(batch_norm, activation):
        return batch_norm.forward_activated(input, activation)
    return activation(batch_norm(input))


class ModuleList(Module):
    """A list of modules: indexable and iterable, with every parameter
    registered (a plain Python list would hide them from the optimizer)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, idx):
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for a ModuleList of length {n}")
        return idx % n

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[str(self._index(idx))]

    def __setitem__(self, idx, module):
        self.add_module(str(self._index(idx)), module)

    def __delitem__(self, idx):
        items = list(self._modules.values())
        del items[idx if isinstance(idx, slice) else self._index(idx)]
        self.__dict__["_modules"] = OrderedDict((str(i), m) for i, m in enumerate(items))

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __iadd__(self, modules):
        return self.extend(modules)

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        items = list(self._modules.values())
        items.insert(index, module)
        self.__dict__["_modules"] = OrderedDict()
        self.extend(items)


class ModuleDict(Module):
    """A dict of modules, with every parameter registered."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        for key, module in (modules.items() if hasattr(modules, "items") else modules):
            self.add_module(key, module)
