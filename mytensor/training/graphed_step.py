"""A training step recorded once as a CUDA graph and replayed for every batch.

Eagerly, each step costs hundreds of kernel launches, each with Python and
driver overhead that dwarfs the work of a small network. Replaying a graph
costs one launch. This is possible because nothing in forward, backward or
the optimizer step waits for the GPU.

A graph replays the same kernels on the same memory with the same arguments.
So the inputs are copied into the memory the graph reads, batches of another
shape (the last, smaller one) run eagerly, and what changes from step to step
in the optimizer (learning rate, momentum, Adam's bias corrections) is written
into device memory by `optimizer.prepare_step()` before each replay (see
`optim.optimizer`). Dropout is left out: the random offset of its masks is a
kernel argument, so every replay would drop the same units.
"""
from ..nn import Dropout
from ..nn import functional as F
from ..optim.optimizer import Optimizer
from .precision import autocast_region


def graph_capturable(model, optimizer, device):
    """Whether a step of this model and optimizer can be replayed from a graph:
    on a GPU, without dropout, with an optimizer whose step has the two halves
    of `Optimizer.step` (not one that replaces `step` as a whole)."""
    return (device.type == "cuda" and type(optimizer).step is Optimizer.step
            and not any(isinstance(m, Dropout) for m in model.modules()))


class GraphedTrainStep:
    """`step(images, targets) -> (logits, loss)`, replaying a captured step.

    The first call runs eagerly (it compiles kernels and creates the optimizer
    state), the second records the graph and replays it, later calls replay.
    With `totals` (a `loop.RunningTotals`), each step adds its loss and correct
    predictions to them, inside the graph. The forward pass and the loss run in the
    autocast region of `precision` (see `training.precision`); with `scaler` (an
    `amp.GradScaler`), the loss is scaled and the update skipped on the device when
    the gradients overflow, inside the graph too."""

    def __init__(self, model, optimizer, label_smoothing=0.0, totals=None, precision="fp32", scaler=None):
        self.model, self.optimizer, self.label_smoothing = model, optimizer, label_smoothing
        self.totals = totals
        self.precision, self.scaler = precision, scaler
        self.graph = None
        self.warm = False

    def eager(self, images, targets):
        return self._step(images, targets)

    def _step(self, images, targets, prepared=False):
        """Forward, backward, the optimizer step and the running totals. With `prepared`,
        the host half of the optimizer step has run already (before a capture): the rest
        is what a graph records."""
        with autocast_region(self.precision, images.device):
            logits = self.model(images)
            loss = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad()
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        if not prepared:
            self.optimizer.prepare_step()
        if self.scaler is None:
            self.optimizer.apply_step()
        else:
            self.scaler.apply_step(self.optimizer)
            self.scaler.update()
        if self.totals is not None:
            self.totals.add(logits, targets, loss)
        return logits, loss

    def __call__(self, images, targets):
        if not self.warm:
            self.warm = True
            return self.eager(images, targets)
        if self.graph is not None and images.shape != self.images.shape:
            return self.eager(images, targets)
        # this step's hyperparameters, into device memory (for the parameters that had
        # gradients in the last step: a replay updates the same ones every time)
        self.optimizer.prepare_step()
        if self.graph is None:
            self.images, self.targets = images.clone(), targets.clone()
            self.graph = images._backend.capture_graph(lambda: self._step(self.images, self.targets, prepared=True))
        else:
            self.images._data[...] = images._data
            self.targets._data[...] = targets._data
        self.graph.replay()
        return self.graph.outputs
