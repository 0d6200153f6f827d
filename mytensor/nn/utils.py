"""`torch.nn.utils`: gradient clipping, and flattening parameters into one vector.

The clipping functions compute on the device and scale the gradients in place, with no
value read back (unless `error_if_nonfinite=True`, which has to look)."""
import math

from .. import unsupported
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor

__getattr__ = unsupported.module_getattr("torch.nn.utils", __name__)


def _grads(parameters):
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale all gradients together so their joint norm is at most max_norm; returns the norm
    before clipping (a 0-d Tensor), as PyTorch does."""
    from ..creation import tensor
    from ..ops import amax, stack
    grads = _grads(parameters)
    if not grads:
        return tensor(0.0)
    norm_type = float(norm_type)
    with no_grad():
        if math.isinf(norm_type):
            total = amax(stack([amax(g.abs()) for g in grads]))
        else:
            total = (stack([(g.abs() ** norm_type).sum() for g in grads]).sum()) ** (1 / norm_type)
        if error_if_nonfinite and not bool(total.isfinite()):
            raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                               f"so it cannot be clipped")
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.to(g.dtype))
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    with no_grad():
        for g in _grads(parameters):
            g.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters):
    from ..ops import cat
    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters):
    start = 0
    with no_grad():
        for p in parameters:
            n = p.numel()
            p.copy_(vec[start:start + n].view_as(p))
            start += n
