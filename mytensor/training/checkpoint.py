"""Checkpoints written atomically: an interrupted write never leaves a broken file.

A checkpoint is a pickle of plain Python and NumPy values (state dicts hold
NumPy arrays), so it loads on any device.
"""
import os
import pickle
import tempfile


def save_checkpoint(state, path):
    """Write to a temporary file in the same folder, flush it to disk, then
    rename: `os.replace` is atomic, so `path` is always the old or the new file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".ckpt")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
        raise RuntimeError(f"checkpoint {path} is corrupt or from an incompatible version: {e}") from None
