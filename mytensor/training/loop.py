"""One epoch of training and one pass of evaluation.

Loss and accuracy are summed on the device and read back only every
`log_every` steps and at the end, so a step never waits for the GPU.
"""
import time

from .. import no_grad
from ..nn import functional as F
from .graphed_step import GraphedTrainStep


class RunningTotals:
    """Device-side sums of loss and correct predictions over an epoch."""

    def __init__(self):
        self.loss_sum = None
        self.correct = None
        self.count = 0

    def add(self, logits, targets, loss):
        n = targets.shape[0]
        batch_loss = loss.detach() * n
        batch_correct = (logits.detach().argmax(1) == targets).sum()
        self.loss_sum = batch_loss if self.loss_sum is None else self.loss_sum + batch_loss
        self.correct = batch_correct if self.correct is None else self.correct + batch_correct
        self.count += n

    def read(self):
        """(mean loss, accuracy): the one place that waits for the device."""
        if not self.count:
            return float("nan"), float("nan")
        return self.loss_sum.item() / self.count, self.correct.item() / self.count


def train_one_epoch(model, loader, optimizer, scheduler=None, step_scheduler_per_batch=False,
                    progress=None, log_every=50, label_smoothing=0.0, cuda_graph=False):
    """Train for one pass over `loader`. With `cuda_graph`, the step is
    captured once and replayed (see `graphed_step`)."""
    model.train()
    totals = RunningTotals()
    start = time.perf_counter()
    step_fn = GraphedTrainStep(model, optimizer, label_smoothing)
    if not cuda_graph:
        step_fn = step_fn.eager
    for step, (images, targets) in enumerate(loader, 1):
        logits, loss = step_fn(images, targets)
        if scheduler is not None and step_scheduler_per_batch:
            scheduler.step()
        totals.add(logits, targets, loss)
        if progress is not None:
            progress.update(1)
            if step % log_every == 0:
                mean_loss, acc = totals.read()
                rate = totals.count / (time.perf_counter() - start)
                progress.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{acc:.4f}", img_s=f"{rate:.0f}")
    mean_loss, acc = totals.read()
    return {"loss": mean_loss, "acc": acc, "time": time.perf_counter() - start}


@no_grad()
def evaluate(model, loader, progress=None):
    model.eval()
    totals = RunningTotals()
    for images, targets in loader:
        logits = model(images)
        totals.add(logits, targets, F.cross_entropy(logits, targets))
        if progress is not None:
            progress.update(1)
    mean_loss, acc = totals.read()
    return {"loss": mean_loss, "acc": acc}
