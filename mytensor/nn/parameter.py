"""`Parameter`: a tensor that a `Module` treats as one of its trainable weights.

It is an ordinary `Tensor` (same storage, same ops) whose only differences are
that it requires grad by default and that assigning it to a module attribute
registers it, so `module.parameters()` finds it.
"""
from ..backend import to_host
from ..creation import zeros
from ..tensor import Tensor


class Parameter(Tensor):
    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = zeros(0)
        if not isinstance(data, Tensor):
            data = Tensor(data)
        # share the storage of `data`, as PyTorch does: no copy, no graph history
        self._init(data._data, data._backend)
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        # pickled (and deep-copied) as a Parameter, not as a plain Tensor
        return (_rebuild_parameter, (to_host(self._data), str(self.device), self.requires_grad))


def _rebuild_parameter(arr, device, requires_grad):
    return Parameter(Tensor(arr, device=device), requires_grad=requires_grad)
