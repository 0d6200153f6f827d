"""Floating-point errors kept quiet inside ops: inf and nan come out silently, as in PyTorch
(NumPy would warn on 1 / 0, log(0), exp(1000)).

Every op runs in this state, so entering it must be cheap: `np.errstate` takes microseconds,
longer than a small op. NumPy 2 keeps the state in a context variable, which `ignore()` sets to
a value built once; `restore(token)` puts back what was there.
"""
import functools

import numpy as np

try:
    from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj
except ImportError:  # a NumPy without that variable: its public context manager, slower
    def ignore():
        state = np.errstate(all="ignore")
        state.__enter__()
        return state

    def restore(state):
        state.__exit__(None, None, None)
else:
    ignore = functools.partial(_extobj_contextvar.set, _make_extobj(all="ignore"))
    restore = _extobj_contextvar.reset
