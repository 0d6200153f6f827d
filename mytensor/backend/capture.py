"""Whether a CUDA graph is being recorded, for the code that must not run then.

A recorded graph replays the device's work and nothing else: a value read back to the host,
a learning rate changed by a scheduler, a seed set on the host would each happen once, at the
recording, and never again. The places that do such things call `forbid` first, so a
recording that meets one stops with a `GraphCaptureError` that names it, instead of a replay
that silently repeats the first step's value (or CUDA's own, vaguer error).
"""
import contextlib
import threading


class GraphCaptureError(RuntimeError):
    """The function being recorded as a CUDA graph did something a replay cannot repeat."""


class _State(threading.local):
    depth = 0  # recordings open in this thread


_state = _State()


@contextlib.contextmanager
def recording():
    """The block records a graph (`CUDABackend.capture_graph` opens it)."""
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1


def is_recording():
    return _state.depth > 0


def forbid(what, instead):
    """Raise while a graph is recorded: `what` (e.g. "reading a tensor's value on the host") cannot
    be replayed; `instead` says what to do."""
    if _state.depth:
        raise GraphCaptureError(f"{what} inside a function recorded as a CUDA graph: a replay repeats only the "
                                f"GPU's work, so this would happen once, at the recording. {instead}")
