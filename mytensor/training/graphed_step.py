"""A training step recorded once as a CUDA graph and replayed for every batch.

Eagerly, each step costs hundreds of kernel launches, each with Python and
driver overhead that dwarfs the work of a small network. Replaying a graph
costs one launch. This is possible because nothing in forward, backward or
the optimizer step waits for the GPU.

What the graph fixes at capture time: batch shape, learning rate, and the
memory of inputs, gradients and outputs. So the trainer recaptures each epoch
(the learning rate may have changed), runs batches of another shape eagerly,
and uses graphs only with optimizers whose update has no per-step constants
(SGD: Adam's bias correction depends on the step count) and models without
dropout (a new mask every step).
"""
from ..nn import Dropout
from ..nn import functional as F
from ..optim import SGD


def graph_capturable(model, optimizer, device):
    """Whether a step of this model and optimizer can be replayed from a graph.
    Not with dropout: its random seed and offset would be fixed at capture."""
    return (device.type == "cuda" and type(optimizer) is SGD
            and not any(isinstance(m, Dropout) for m in model.modules()))


class GraphedTrainStep:
    """`step(images, targets) -> (logits, loss)`, replaying a captured step.

    The first call runs eagerly (it compiles kernels and creates the optimizer
    state), the second records the graph and replays it, later calls replay."""

    def __init__(self, model, optimizer, label_smoothing=0.0):
        self.model, self.optimizer, self.label_smoothing = model, optimizer, label_smoothing
        self.graph = None
        self.warm = False

    def eager(self, images, targets):
        logits = self.model(images)
        loss = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return logits, loss

    def __call__(self, images, targets):
        if not self.warm:
            self.warm = True
            return self.eager(images, targets)
        if self.graph is None:
            self.images, self.targets = images.clone(), targets.clone()
            self.graph = images._backend.capture_graph(lambda: self.eager(self.images, self.targets))
        elif images.shape != self.images.shape:
            return self.eager(images, targets)
        else:
            self.images._data[...] = images._data
            self.targets._data[...] = targets._data
        self.graph.replay()
        return self.graph.outputs
