"""Compare analytic gradients with central finite differences, in float64."""
import numpy as np

from .grad_mode import no_grad


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """True if backward of `fn(*inputs)` matches finite differences for every
    input that requires grad. Inputs must be float64: float32 rounding swamps
    the differences."""
    from ..tensor import Tensor
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    wrt = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input requires grad")
    for t in wrt:
        if t.dtype.name != "float64":
            raise TypeError(f"gradcheck needs float64 inputs for accurate finite differences, got {t.dtype}")
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    outs = [o for o in outs if isinstance(o, Tensor) and o.requires_grad]
    rng = np.random.default_rng(0)
    # a random projection of the outputs turns the Jacobian check into one backward pass
    weights = [rng.standard_normal(o.shape) for o in outs]

    def projected():
        with no_grad():
            res = fn(*inputs)
        res = res if isinstance(res, (tuple, list)) else (res,)
        res = [r for r in res if isinstance(r, Tensor) and r.dtype.is_floating_point]
        return sum(float((r._backend.to_numpy(r._data) * w).sum()) for r, w in zip(res, weights))

    for t in wrt:
        t.grad = None
    total = None
    for o, w in zip(outs, weights):
        term = (o * Tensor(w, dtype=o.dtype, device=o.device)).sum()
        total = term if total is None else total + term
    total.backward()
    for k, t in enumerate(wrt):
        analytic = np.zeros(t.shape) if t.grad is None else t._backend.to_numpy(t.grad._data)
        numeric = np.zeros(t.shape)
        flat = t._data.reshape(-1)
        for i in range(flat.size):
            orig = flat[i].item()
            flat[i] = orig + eps
            plus = projected()
            flat[i] = orig - eps
            minus = projected()
            flat[i] = orig
            numeric.reshape(-1)[i] = (plus - minus) / (2 * eps)
        if not np.allclose(analytic, numeric, atol=atol, rtol=rtol):
            if raise_exception:
                worst = np.abs(analytic - numeric).max()
                raise RuntimeError(f"gradcheck failed for input {k} of shape {t.shape}: max difference {worst:.3g}"
                                   f"\nanalytic:\n{analytic}\nnumeric:\n{numeric}")
            return False
    return True
