"""One epoch of training and one pass of evaluation.

Loss, correct predictions (top-1 and top-5) and the image count are summed on
the device and read back only every `log_every` steps and at the end, so a step
never waits for the GPU; each read also checks that the loss is still finite.
On the GPU the step, sums included, is recorded once as a CUDA graph and replayed
(`mytensor.cuda.graphed`), so the sums cost no Python at all; a run keeps one
`TrainingStep` for all its epochs, so it is recorded once per run, not per epoch. Evaluation can
average the logits of several views of each test image (test-time augmentation,
`tta_logits`).
"""
import math
import time

from .. import arange, cat, no_grad, zeros
from ..cuda import graphed
from ..nn import functional as F
from .precision import autocast_region

TOP_K = 5  # the second accuracy reported: the target among the 5 highest scores


def target_rank(logits, targets):
    """Each row's target's place among its logits, 0 for the highest: the classes
    ranked before it, those with a higher logit and, among equal ones, a lower index
    (the order of `argmax` and of a stable sort). Comparisons and a sum, no sort,
    so it stays a few elementwise kernels on the device that a CUDA graph records.
    16-bit logits are compared in float32: exactly, and with the kernels every backend has."""
    if logits.element_size() < 4:
        logits = logits.float()
    target_logit = logits.gather(1, targets.unsqueeze(1))
    before = arange(logits.shape[1], device=logits.device) < targets.unsqueeze(1)
    return ((logits > target_logit) | ((logits == target_logit) & before)).sum(1)


class RunningTotals:
    """Device-side sums of loss, top-1 and top-5 correct predictions and images over an epoch.

    `add` only queues in-place additions to device scalars (made at the first
    call, on the device and in the dtype of the loss), so it can run eagerly or
    be recorded in a CUDA graph, which then adds at every replay."""

    def __init__(self):
        self.loss_sum = self.correct = self.correct_top_k = self.count = None

    def add(self, logits, targets, loss):
        if self.loss_sum is None:
            self.loss_sum = zeros((), dtype=loss.dtype, device=loss.device)
            self.correct = zeros((), dtype="int64", device=loss.device)
            self.correct_top_k = zeros((), dtype="int64", device=loss.device)
            self.count = zeros((), dtype="int64", device=loss.device)
        n = targets.shape[0]
        rank = target_rank(logits.detach(), targets)
        self.loss_sum += loss.detach() * n
        self.correct += (rank == 0).sum()
        self.correct_top_k += (rank < TOP_K).sum()
        self.count += n

    def reset(self):
        """Back to zero in place: a recorded step goes on adding to the same device memory."""
        for total in (self.loss_sum, self.correct, self.correct_top_k, self.count):
            if total is not None:
                total.zero_()

    def read(self):
        """(mean loss, top-1 accuracy, top-5 accuracy): the one place that waits for the device."""
        if self.count is None:
            return float("nan"), float("nan"), float("nan")
        count = self.count.item()
        return self.loss_sum.item() / count, self.correct.item() / count, self.correct_top_k.item() / count


def train_step(model, optimizer, label_smoothing=0.0, totals=None, precision="fp32", scaler=None):
    """`step(images, targets) -> (logits, loss)`: forward and the loss in the autocast region of
    `precision` (see `training.precision`), backward, the optimizer step (with `scaler`, an
    `amp.GradScaler`: the loss scaled, the update skipped on the device when the gradients
    overflow) and, with `totals` (a `RunningTotals`), the loss and correct predictions added to
    them. Nothing in it waits for the GPU, so `mytensor.cuda.graphed` can record it."""
    def step(images, targets):
        with autocast_region(precision, images.device):
            logits = model(images)
            loss = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
        optimizer.zero_grad()
        (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        if totals is not None:
            totals.add(logits, targets, loss)
        return logits, loss
    return step


class TrainingStep:
    """`train_step` with its `RunningTotals`, made once and called by every epoch of a run. With
    `cuda_graph` the step is recorded as a CUDA graph at its second call and replayed ever after
    (`mytensor.cuda.graphed`; a batch of another size, the last, and a step that cannot be
    recorded run eagerly): an epoch that made its own would pay an eager step and a recording
    again, tens of milliseconds, as much as several replayed steps of a small network."""

    def __init__(self, model, optimizer, label_smoothing=0.0, precision="fp32", scaler=None, cuda_graph=False):
        self.totals = RunningTotals()
        step = train_step(model, optimizer, label_smoothing, self.totals, precision, scaler)
        self.step = graphed(step, fallback=True) if cuda_graph else step

    def __call__(self, images, targets):
        return self.step(images, targets)


def train_one_epoch(model, loader, optimizer, scheduler=None, step_scheduler_per_batch=False,
                    progress=None, log_every=50, label_smoothing=0.0, cuda_graph=False, precision="fp32",
                    scaler=None, lookahead=None, step=None):
    """Train for one pass over `loader`. `step`: the run's `TrainingStep`, kept across epochs;
    without it one is made from `label_smoothing`, `cuda_graph` (the step replayed from a CUDA
    graph), `precision` and `scaler` (an `amp.GradScaler` for float16 steps) for this epoch alone.
    `lookahead`: an `optim.Lookahead` stepped after every optimizer step. A loss that is no longer
    finite (a diverging learning rate) raises FloatingPointError at the next read, instead of
    training on NaN weights."""
    model.train()
    if step is None:
        step = TrainingStep(model, optimizer, label_smoothing, precision, scaler, cuda_graph)
    totals = step.totals
    totals.reset()
    start = time.perf_counter()
    for index, (images, targets) in enumerate(loader, 1):
        step(images, targets)
        if lookahead is not None:
            lookahead.step()
        if scheduler is not None and step_scheduler_per_batch:
            scheduler.step()
        if progress is not None:
            progress.update(1)
        if index % log_every == 0:
            mean_loss, acc, _ = _finite(totals.read(), index, len(loader))
            if progress is not None:
                rate = totals.count.item() / (time.perf_counter() - start)  # read() has synced already
                progress.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{acc:.4f}", img_s=f"{rate:.0f}")
    mean_loss, acc, acc5 = _finite(totals.read(), len(loader), len(loader))
    return {"loss": mean_loss, "acc": acc, "acc5": acc5, "time": time.perf_counter() - start}


def _finite(read, step, steps):
    """The (mean loss, top-1, top-5 accuracy) just read, if the loss is finite. The sum since the
    epoch's start stays NaN or infinite once a step made it so."""
    if not math.isfinite(read[0]):
        raise FloatingPointError(f"the training loss is {read[0]} at step {step} of {steps}")
    return read


TTA = ("none", "flip", "translate")


def tta_logits(model, images, tta="none"):
    """The model's logits, averaged over views of each image (airbench's test-time augmentation):
    "flip" averages the image and its mirror; "translate" gives that pair half the weight and the
    pairs shifted one pixel up-left and down-right (the border mirrored in) a quarter each."""
    if tta == "none":
        return model(images)

    def mirrored(x):
        return 0.5 * model(x).float() + 0.5 * model(x.flip(3)).float()

    logits = mirrored(images)
    if tta == "flip":
        return logits
    shifted = [mirrored(_shift(_shift(images, 2, d), 3, d)) for d in (-1, 1)]
    return 0.5 * logits + 0.25 * (shifted[0] + shifted[1])


def _shift(x, dim, d):
    """x moved by d = -1 or 1 along `dim` (out[i] = x[i + d]), the row beyond the border mirrored
    back: rows (1, 0, 1, ..., n - 2) or (1, 2, ..., n - 1, n - 2); slices only, no index to upload."""
    n = x.shape[dim]
    if d < 0:
        return cat([x.narrow(dim, 1, 1), x.narrow(dim, 0, n - 1)], dim)
    return cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 2, 1)], dim)


class EvaluationStep:
    """The logits of a batch (`tta_logits`), its loss and their sums in a `RunningTotals`, made once
    for all of a run's evaluations, as `TrainingStep` is for its training: with `cuda_graph` recorded
    at its second call and replayed after (other batch sizes run eagerly), so an evaluation is a
    launch a batch, not the thousands of kernel launches that test-time augmentation's six passes
    through the network make."""

    def __init__(self, model, precision="fp32", tta="none", cuda_graph=False):
        self.totals = RunningTotals()

        def step(images, targets):
            with autocast_region(precision, images.device):
                logits = tta_logits(model, images, tta)
                loss = F.cross_entropy(logits, targets)
            self.totals.add(logits, targets, loss)
        self.step = graphed(step, fallback=True) if cuda_graph else step

    def __call__(self, images, targets):
        self.step(images, targets)


@no_grad()
def evaluate(model, loader, progress=None, precision="fp32", tta="none", step=None):
    """Mean loss, top-1 and top-5 accuracy over `loader` (and the seconds it took), with the
    test-time augmentation `tta` (see `tta_logits`). `step`: the run's `EvaluationStep`, kept
    across evaluations; without it one is made from `precision` and `tta` for this one alone."""
    model.eval()
    if step is None:
        step = EvaluationStep(model, precision, tta)
    totals = step.totals
    totals.reset()
    start = time.perf_counter()
    for images, targets in loader:
        step(images, targets)
        if progress is not None:
            progress.update(1)
    mean_loss, acc, acc5 = totals.read()
    return {"loss": mean_loss, "acc": acc, "acc5": acc5, "time": time.perf_counter() - start}
