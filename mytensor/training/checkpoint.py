"""Checkpoints: `mytensor.save` files, written atomically, that hold data only.

A checkpoint is a dict of state dicts (NumPy arrays) and plain values, so it
loads on any device, and loading one cannot run code (see `serialization`).
"""
import os

from ..serialization import load, save


def save_checkpoint(state, path):
    """`path` is always the old file or the new one, whenever the process dies."""
    save(state, path)


def load_checkpoint(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    return load(path)
