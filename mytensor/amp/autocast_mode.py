"""`autocast`: a context manager (and decorator) opening a mixed-precision region.

    with mt.autocast("cuda", dtype=mt.bfloat16):
        loss = F.cross_entropy(model(x), y)   # convolutions in bfloat16, the loss in float32
    loss.backward()                           # outside: backward follows the forward's dtypes

Which op runs in which dtype is written in `mytensor.ops.autocast_policy`. Parameters
and optimizer state stay float32; only the ops' inputs are cast.
"""
import functools

from .. import dtypes
from ..ops import autocast_policy

_DEFAULT_DTYPE = {"cuda": dtypes.float16, "cpu": dtypes.bfloat16}  # PyTorch's defaults


def is_autocast_enabled(device_type="cuda"):
    return autocast_policy.region_dtype(device_type) is not None


def get_autocast_dtype(device_type="cuda"):
    """The dtype an enabled region of `device_type` would use now (its default when none is open)."""
    return autocast_policy.region_dtype(device_type) or _DEFAULT_DTYPE[device_type]


class autocast:
    def __init__(self, device_type="cuda", dtype=None, enabled=True, cache_enabled=None):
        device_type = str(device_type).split(":")[0]
        if device_type not in _DEFAULT_DTYPE:
            raise ValueError(f"autocast: device_type must be 'cuda' or 'cpu', got {device_type!r}")
        dtype = _DEFAULT_DTYPE[device_type] if dtype is None else dtypes.get_dtype(dtype)
        if enabled and dtype not in dtypes.LOW_PRECISION:
            raise ValueError(f"autocast: dtype must be mytensor.float16 or mytensor.bfloat16, got {dtype}")
        self.device_type, self.dtype, self.enabled = device_type, dtype, bool(enabled)
        self._saved = []  # what each (possibly nested) entry replaced

    def __enter__(self):
        region = self.dtype if self.enabled else None
        self._saved.append((region, autocast_policy.enter_region(self.device_type, region)))
        return self

    def __exit__(self, *exc):
        region, previous = self._saved.pop()
        autocast_policy.exit_region(self.device_type, region, previous)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            with autocast(self.device_type, self.dtype, self.enabled):
                return fn(*args, **kwargs)
        return run

    def __repr__(self):
        return f"autocast(device_type={self.device_type!r}, dtype={self.dtype}, enabled={self.enabled})"
