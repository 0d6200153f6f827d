"""Whether operations record the graph: `no_grad()` and `enable_grad()`.

The flag is a context variable: each thread starts recording, and reading it (every op does)
costs a fraction of a `threading.local` attribute's lookup."""
import contextvars
import functools

_enabled = contextvars.ContextVar("grad_enabled", default=True)


def is_grad_enabled():
    return _enabled.get()


def set_grad_enabled(mode):
    _enabled.set(bool(mode))


class _GradMode:
    mode = True

    def __enter__(self):
        self.prev = is_grad_enabled()
        set_grad_enabled(self.mode)

    def __exit__(self, *exc):
        set_grad_enabled(self.prev)

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Run without recording the graph (evaluation, optimizer updates)."""
    mode = False


class enable_grad(_GradMode):
    """Record the graph again inside a `no_grad` block."""
    mode = True


class inference_mode(no_grad):
    """PyTorch's faster no_grad for evaluation; here it is no_grad (`inference_mode(False)` records)."""

    def __init__(self, mode=True):
        self.mode = not mode

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = is_grad_enabled()
            set_grad_enabled(mode)
            try:
                return fn(*args, **kwargs)
            finally:
                set_grad_enabled(prev)
        return wrapper
