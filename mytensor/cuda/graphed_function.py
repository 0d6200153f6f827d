"""`mytensor.cuda.graphed`: a function -- a whole training step -- recorded once as a CUDA graph
and replayed at every later call.

    @mt.cuda.graphed
    def train_step(x, y):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    for x, y in loader:                # batches on the GPU
        loss = train_step(x, y)        # the same tensor at every call, rewritten by each
        scheduler.step()

Eagerly, a step is hundreds of kernel launches, each with Python and driver overhead that dwarfs
the work of a small network; a replay is one launch. It can be, because nothing in forward,
backward or an optimizer's device half waits for the GPU.

The first `warmup` calls run eagerly: kernels compile, optimizer state is made, and the optimizers
that step are noted. The next call records the function on copies of its arguments (the static
inputs) and replays the recording. Each later call copies its arguments into the static inputs,
runs the host half of every noted optimizer's step (`Optimizer.prepare_step`: step counts, and
this step's learning rate and bias corrections written into the device memory the graph reads),
then replays. Dropout draws new masks at every replay (its random offset moves on in device
memory), and autocast regions inside the function are recorded like any other op.

A replay repeats only the GPU's work. What it cannot repeat stops the recording with a
`GraphCaptureError` that says what to do instead: a value read on the host (`.item()`, `print`),
a scheduler stepped inside the function, an optimizer that bakes its hyperparameters into its
launches. A later call whose tensors differ in shape, dtype or device from the recorded ones, or
whose other arguments differ, raises too. With `fallback=True` such calls run eagerly instead,
and a recording that fails warns and leaves every later call eager.

The tensors a call returns belong to the graph: the next call rewrites them. Keep `.item()`s or
`.clone()`s of what you need longer; a call that finds the previous call's tensors held in more
than one place (appended to a list, say) raises, as that list would hold one tensor many times.

On the CPU there is nothing to record: where no argument is on a GPU, calls run eagerly.
"""
import contextlib
import sys
import warnings
from collections import namedtuple

from ..autograd.grad_mode import no_grad
from ..backend.capture import GraphCaptureError
from ..optim.optimizer import Optimizer, stepped
from ..tensor import Tensor


def graphed(fn=None, *, warmup=1, fallback=False):
    """`fn` as a `GraphedFunction`; also a decorator, bare (`@graphed`) or with keywords
    (`@graphed(fallback=True)`)."""
    if fn is None:
        return lambda f: GraphedFunction(f, warmup, fallback)
    return GraphedFunction(fn, warmup, fallback)


class GraphedFunction:
    """`fn` recorded as a CUDA graph at its `warmup + 1`-th call and replayed after (see the module)."""

    def __init__(self, fn, warmup=1, fallback=False):
        if not callable(fn):
            raise TypeError(f"graphed() needs a function, got {type(fn).__name__}")
        if warmup < 1:
            raise ValueError(f"warmup must be at least 1 (got {warmup}): the recording needs the kernels compiled "
                             f"and the optimizer state made by an eager call")
        self.fn, self.warmup, self.fallback = fn, warmup, fallback
        self.graph = None   # the recording, once made
        self.eager = False  # a recording failed (with fallback): every call runs eagerly
        self._calls = 0
        self._optimizers = []  # those that stepped in the warm-up: their host halves run before each replay
        self._prepared = []    # those whose host half has run for the call being recorded
        self._eager_grads = False  # an eager call since the last replay gave the parameters other gradients

    def __call__(self, *args, **kwargs):
        if self.eager:
            return self.fn(*args, **kwargs)
        tensors = _tensors((args, kwargs))
        if self.graph is not None:
            return self._replay(args, kwargs, tensors)
        backend = next((t._backend for t in tensors if t._backend.records_graphs), None)
        if backend is None:  # nothing on a GPU: nothing to record
            return self.fn(*args, **kwargs)
        if self._calls < self.warmup:
            self._calls += 1
            with stepped() as found:
                out = self.fn(*args, **kwargs)
            self._optimizers += [o for o in found if not any(o is k for k in self._optimizers)]
            return out
        try:
            return self._record(backend, args, kwargs)
        except GraphCaptureError as e:
            if not self.fallback:
                raise
            warnings.warn(f"{e} Every call of {getattr(self.fn, '__name__', 'the function')} runs eagerly from now "
                          f"on.", stacklevel=2)
            self.eager = True
            with _host_halves_done(self._prepared):  # this call's step, eagerly, its host halves run once
                return self.fn(*args, **kwargs)

    # ----------------------------------------------------------- recording
    def _record(self, backend, args, kwargs):
        for opt in self._optimizers:
            _check_replayable(opt)
        self._signature = _signature((args, kwargs))
        with no_grad():
            static = _map_tensors(lambda t: t.detach().clone().requires_grad_(t.requires_grad), (args, kwargs))
        self._static_inputs = _tensors(static)
        for opt in self._optimizers:
            opt.prepare_step()
        self._prepared = list(self._optimizers)
        with _host_halves_done(self._prepared), stepped() as found:
            graph = backend.capture_graph(lambda: self.fn(*static[0], **static[1]))
        new = [o for o in found if not any(o is k for k in self._optimizers)]
        if new:
            raise GraphCaptureError(f"{type(new[0]).__name__}.step() ran in the recording but in none of the "
                                    f"{self.warmup} warm-up call(s): its host half would not run before the "
                                    f"replays. Step every optimizer at every call.")
        _check_outputs(graph.outputs)
        graph.replay()
        self.graph, self._prepared = graph, []
        self._outputs = _tensors(graph.outputs)
        self._held = _references(self._outputs)
        self._grads = [(p, p.grad) for opt in self._optimizers for group in opt.param_groups
                       for p in group["params"] if p.grad is not None]
        return graph.outputs

    # ----------------------------------------------------------- replaying
    def _replay(self, args, kwargs, tensors):
        if not _same(_signature((args, kwargs)), self._signature):
            if self.fallback:
                self._eager_grads = True
                return self.fn(*args, **kwargs)
            raise GraphCaptureError(
                f"{getattr(self.fn, '__name__', 'the function')} was recorded for arguments "
                f"{_describe(self._signature)}, and is called with {_describe(_signature((args, kwargs)))}: a "
                f"replay runs on the recorded shapes, dtypes and devices, and with the recorded values of the "
                f"other arguments. Make the batches one size (drop_last=True), pass the values as tensors, or "
                f"pass fallback=True to run such calls eagerly.")
        if any(now - then > 1 for now, then in zip(_references(self._outputs), self._held)):
            raise GraphCaptureError(
                "the tensors the previous call returned are held in more than one place (appended to a list?): "
                "every call rewrites them in place, so all those places would show the last call's values. Keep "
                ".item() or .clone() of what you need.")
        for static, t in zip(self._static_inputs, tensors):
            static._data[...] = t._data
        if self._eager_grads:  # the graph's gradients back on the parameters, for those who read them
            for p, grad in self._grads:
                p.grad = grad
            self._eager_grads = False
        for opt in self._optimizers:
            opt.prepare_step()
        self.graph.replay()
        return self.graph.outputs


@contextlib.contextmanager
def _host_halves_done(optimizers):
    """Inside the block, `prepare_step` of these optimizers does nothing: it has run for this step
    already (before the recording, which must hold only the device half)."""
    for opt in optimizers:
        opt.prepare_step = _nothing
    try:
        yield
    finally:
        for opt in optimizers:
            del opt.prepare_step


def _nothing():
    pass


def _check_replayable(opt):
    name = type(opt).__name__
    if not type(opt).capturable:
        raise GraphCaptureError(f"{name} bakes its hyperparameters into its launches, so a replay would keep the "
                                f"first step's learning rate: use an optimizer whose `capturable` is True (SGD, "
                                f"Adam, AdamW, Muon).")
    if type(opt).step is not Optimizer.step:
        raise GraphCaptureError(f"{name} overrides step(): a replay would repeat only the device half of "
                                f"Optimizer.step (prepare_step, then apply_step).")
    if not any(p.grad is not None for group in opt.param_groups for p in group["params"]):
        raise GraphCaptureError(f"no parameter of {name} has a gradient when its step is prepared, before the "
                                f"recording: call zero_grad() before backward(), not after step().")


def _check_outputs(value):
    if isinstance(value, (tuple, list)):
        for v in value:
            _check_outputs(v)
    elif isinstance(value, dict):
        for v in value.values():
            _check_outputs(v)
    elif value is not None and not isinstance(value, Tensor):
        raise GraphCaptureError(f"the function returned a {type(value).__name__}: a value made on the host at the "
                                f"recording, which no replay would update. Return tensors.")


# ------------------------------------------------- arguments and results, as trees
def _tensors(value):
    """The tensors in a nest of tuples, lists and dicts, in order."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _map_tensors(fn, value):
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(fn, v) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(fn, v) for k, v in value.items()}
    return value


def _signature(value):
    """What a replay must find as recorded: each tensor's shape, dtype and device, other values as they are."""
    return _map_tensors(lambda t: _TensorSpec(tuple(t._data.shape), t.dtype, t.device), value)


class _TensorSpec(namedtuple("_TensorSpec", "shape dtype device")):
    def __repr__(self):
        return f"tensor{self.shape} {self.dtype.name} on {self.device}"


def _same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return a is b or bool(a == b)
    except (TypeError, ValueError):  # arrays and the like: equal only as the same object
        return False


def _describe(signature):
    args, kwargs = signature
    return "(" + ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]) + ")"


def _references(tensors):
    """How many references each tensor has (CPython's count; the differences between two calls are
    what matters: ones held by the caller)."""
    return [sys.getrefcount(t) for t in tensors]
