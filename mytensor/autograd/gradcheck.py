"""Compare analytic gradients with central finite differences, in float64."""
import numpy as np

from ..backend import to_host
from .grad_mode import no_grad


_ACCEPTED = {"nondet_tol": 0.0, "check_undefined_grad": True, "check_grad_dtypes": False, "check_backward_ad": True,
             "fast_mode": False, "masked": None}  # PyTorch's options that change nothing here
_NOT_CHECKED = ("check_batched_grad", "check_batched_forward_grad", "check_forward_ad")  # need what we don't have


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, **options):
    """True if backward of `fn(*inputs)` matches finite differences for every
    input that requires grad. Inputs must be float64: float32 rounding swamps
    the differences. The inputs' `.grad` are left as they were.

    PyTorch's other options are accepted where they change nothing here (`fast_mode`,
    `nondet_tol`, ...); asking for forward-mode or batched checks is an error."""
    from ..tensor import Tensor
    for name, value in options.items():
        if name in _NOT_CHECKED:
            if value:
                raise NotImplementedError(f"gradcheck({name}=True): mytensor has no forward-mode or batched "
                                          f"autograd to check")
        elif name not in _ACCEPTED:
            raise TypeError(f"gradcheck() got an unexpected keyword argument {name!r}")
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    wrt = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input requires grad")
    for t in wrt:
        if t.dtype.name != "float64":
            raise TypeError(f"gradcheck needs float64 inputs for accurate finite differences, got {t.dtype}")

    def float_outputs(res):
        res = res if isinstance(res, (tuple, list)) else (res,)
        return [r for r in res if isinstance(r, Tensor) and r.dtype.is_floating_point]

    # a random projection of the outputs turns the Jacobian check into one backward pass
    outs = float_outputs(fn(*inputs))
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(o.shape) for o in outs]

    def projected():
        with no_grad():
            res = float_outputs(fn(*inputs))
        return sum(float((to_host(r._data) * w).sum()) for r, w in zip(res, weights))

    saved_grads = [t.grad for t in wrt]
    for t in wrt:
        t.grad = None
    terms = [(o * Tensor(w, dtype=o.dtype, device=o.device)).sum() for o, w in zip(outs, weights) if o.requires_grad]
    if terms:
        sum(terms[1:], terms[0]).backward()
    analytic = [np.zeros(t.shape) if t.grad is None else to_host(t.grad._data) for t in wrt]
    for t, g in zip(wrt, saved_grads):
        t.grad = g
    for k, t in enumerate(wrt):
        numeric = np.zeros(t.shape)
        for idx in np.ndindex(*t.shape):
            orig = t._data[idx].item()
            t._data[idx] = orig + eps
            plus = projected()
            t._data[idx] = orig - eps
            minus = projected()
            t._data[idx] = orig
            numeric[idx] = (plus - minus) / (2 * eps)
        if not np.allclose(analytic[k], numeric, atol=atol, rtol=rtol):
            if raise_exception:
                worst = np.abs(analytic[k] - numeric).max()
                raise RuntimeError(f"gradcheck failed for input {k} of shape {tuple(t.shape)}: max difference "
                                   f"{worst:.3g}"
                                   f"\nanalytic:\n{analytic[k]}\nnumeric:\n{numeric}")
            return False
    return True
