"""Recipes: named ways to train, each a set of `RunConfig` defaults plus the pieces no option says.

    mytensor train --recipe airbench94      # Keller Jordan's airbench94 on CIFAR-10
    mytensor train --recipe airbench94_muon # its faster sibling: Muon for the filters, 8 epochs
    mytensor train --recipe resnet9         # the DAWNBench ResNet-9 (Myrtle.ai's) on CIFAR-10
    mytensor train --recipe tinyimagenet-resnet18   # ResNet-18 on Tiny ImageNet

Options given beside a recipe replace its defaults (`--recipe airbench94 --epochs 12`); the
run's config.json holds the settings that resulted, so eval, predict and --resume rebuild it.
The pieces are functions of the model and the config: the optimizer's parameter groups (or the
whole optimizer), the learning-rate schedule (chosen with `--schedule recipe`, the recipe's default)
or OneCycle's rise, slow weights (`optim.Lookahead`), and the augmentation of the device loader.
"""
import dataclasses
from typing import Callable

from .. import nn, optim
from ..optim import lr_scheduler


@dataclasses.dataclass(frozen=True)
class Recipe:
    """RunConfig defaults and the pieces a run builds from the recipe (None: the usual ones)."""

    defaults: dict  # RunConfig fields
    param_groups: Callable | None = None  # (model, config) -> the optimizer's groups
    optimizer: Callable | None = None  # (model, config) -> the optimizer, in place of --optimizer's
    scheduler: Callable | None = None  # (config, optimizer, steps per epoch) -> a scheduler stepped every batch
    lookahead: Callable | None = None  # (model, total steps) -> an optim.Lookahead stepped every batch
    augmentation: dict | None = None  # DeviceLoader's augmentation options (None: what the dataset declares)
    onecycle_rise: float = 0.3  # the part of the run over which OneCycle's lr rises, when no --warmup says
    milestones: tuple = (0.85, 0.90, 0.907, 0.91, 0.93, 0.94)  # test accuracies whose time a run prints


# ------------------------------------------------------------------ airbench94
# airbench94 sums the loss over the batch, with lr 11.5 and weight decay 0.0153 per 1024 images, both
# divided by 1024 * (1 + 1 / (1 - momentum)); with the mean loss used here the same steps take
# lr = 11.5 / (1 + 1 / 0.15) = 1.5 and weight_decay = 0.0153 / 11.5 = 0.00133 (lr * weight_decay the same).
AIRBENCH_BIAS_SCALE = 64  # batch-norm biases learn 64x faster, with the same decay per step
AIRBENCH_WHITEN_BIAS_EPOCHS = 3  # the whitening bias learns for the first 3 epochs only


def airbench_biases(model):
    """(the batch-norm biases, the whitening biases, the other trainable parameters)."""
    norm = [m.bias for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.bias is not None]
    whiten = [m.bias for m in model.modules() if isinstance(m, nn.PatchWhitening) and m.bias is not None]
    taken = {id(p) for p in norm + whiten}
    return norm, whiten, [p for p in model.parameters() if p.requires_grad and id(p) not in taken]


def airbench_groups(model, config):
    """The weights, the batch-norm biases (lr x 64, weight decay / 64) and the whitening biases."""
    norm, whiten, rest = airbench_biases(model)
    return [{"params": rest}, {"params": norm, "lr": config.lr * AIRBENCH_BIAS_SCALE,
                               "weight_decay": config.weight_decay / AIRBENCH_BIAS_SCALE}, {"params": whiten}]


def warmup_linear_decay(total_steps, warmup=0.23, start=0.2, end=0.07):
    """The factor on the lr at each step: from `start` up to 1 over the first `warmup` of the
    steps, then linearly down to `end` at the last."""
    rise = int(total_steps * warmup)

    def factor(step):
        if step < rise:
            return start + (1 - start) * step / rise
        return 1 + (end - 1) * (step - rise) / max(1, total_steps - rise)
    return factor


def airbench_scheduler(config, optimizer, steps_per_epoch):
    """airbench94's schedule for every group, the whitening biases' cut to 0 after 3 epochs."""
    factor = warmup_linear_decay(config.epochs * steps_per_epoch)
    stop = AIRBENCH_WHITEN_BIAS_EPOCHS * steps_per_epoch
    return lr_scheduler.LambdaLR(optimizer, [factor, factor, lambda step: factor(step) if step < stop else 0.0])


def airbench_lookahead(model, total_steps):
    """Every 5 steps, slow weights move toward the model's by 1 - 0.95^5 (step / total)^3: all the way
    at first, a quarter of the way at the end."""
    return optim.Lookahead(model, k=5, alpha=lambda step: 1 - 0.95 ** 5 * (step / total_steps) ** 3)


# ------------------------------------------------------------------ airbench94_muon
# airbench94_muon sums the loss over its batch of 2000 and gives SGD lr 0.053 (biases) and 0.67 (head),
# each with weight_decay 2e-6 * 2000 / lr. The mean loss used here has 1/2000 of that gradient, and SGD's
# step (momentum included) is linear in lr * gradient and lr * weight_decay * weight: lr x 2000 and
# weight_decay / 2000 take the same steps, the decay per step lr * weight_decay = 2e-6 * 2000 at the start.
# Muon: airbench's buffer is buf = 0.6 buf + g and its step orthogonalises g + 0.6 buf. For the same
# gradients optim.Muon's buffer B += 0.4 (G - B) is 0.4 buf, and its G + 0.6 (B - G) = 0.4 (g + 0.6 buf);
# the mean loss makes that 0.4 / 2000 times airbench's. Newton-Schulz first divides by the norm (its eps,
# 1e-7, is far below it), so the orthogonalised step is the same: the same momentum 0.6 and lr 0.24, no
# weight decay. Its lr ratio sqrt(max(1, rows / cols)) is 1 for every filter (out <= in * 3 * 3), as
# airbench applies none.
MUON_BATCH = 2000
MUON_BIAS_LR, MUON_HEAD_LR = 0.053, 0.67
MUON_FILTER_LR, MUON_FILTER_MOMENTUM = 0.24, 0.6


def airbench_muon_optimizer(model, config):
    """Muon for the convolution filters (each rescaled to norm sqrt(out channels) before its step, 3
    Newton-Schulz steps) and SGD for the whitening and batch-norm biases (--lr, --weight-decay) and the
    head (its lr 0.67 / 0.053 times theirs, the same decay per step). The filters come first, so the lr
    that metrics.csv records is theirs."""
    norm, whiten, rest = airbench_biases(model)
    filters = [p for p in rest if p.ndim == 4]
    head = [p for p in rest if p.ndim != 4]
    scale = MUON_HEAD_LR / MUON_BIAS_LR
    muon = optim.Muon(filters, lr=MUON_FILTER_LR, momentum=MUON_FILTER_MOMENTUM, nesterov=True, weight_decay=0.0,
                      ns_steps=3, normalize_weights=True)
    sgd = optim.SGD([{"params": whiten}, {"params": norm},
                     {"params": head, "lr": config.lr * scale, "weight_decay": config.weight_decay / scale}],
                    lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.nesterov)
    return optim.CombinedOptimizer(muon, sgd)


def airbench_muon_scheduler(config, optimizer, steps_per_epoch):
    """Every lr linearly from its start to 0 over the run; the whitening bias's over its first 3 epochs."""
    total, stop = config.epochs * steps_per_epoch, AIRBENCH_WHITEN_BIAS_EPOCHS * steps_per_epoch

    def decay(step):
        return 1 - step / total

    def whiten(step):
        return max(0.0, 1 - step / stop)
    return lr_scheduler.LambdaLR(optimizer, [decay, whiten, decay, decay])  # filters, whitening, biases, head


AIRBENCH_AUGMENTATION = {"translate": 2, "padding_mode": "reflect", "flip": "alternating"}


RECIPES = {
    "airbench94": Recipe(
        defaults=dict(dataset="cifar10", model="airbench94", epochs=10, batch_size=1024, optimizer="sgd", lr=1.5,
                      momentum=0.85, nesterov=True, weight_decay=0.0153 / 11.5, schedule="recipe",
                      label_smoothing=0.2, augment=True, data_on_device=True, drop_last=True, tta="translate"),
        param_groups=airbench_groups, scheduler=airbench_scheduler, lookahead=airbench_lookahead,
        augmentation=AIRBENCH_AUGMENTATION),
    "airbench94_muon": Recipe(
        defaults=dict(dataset="cifar10", model="airbench94_muon", epochs=8, batch_size=MUON_BATCH, optimizer="sgd",
                      lr=MUON_BIAS_LR * MUON_BATCH, momentum=0.85, nesterov=True,
                      weight_decay=2e-6 * MUON_BATCH / MUON_BIAS_LR / MUON_BATCH, schedule="recipe",
                      label_smoothing=0.2, augment=True, data_on_device=True, drop_last=True, tta="translate"),
        optimizer=airbench_muon_optimizer, scheduler=airbench_muon_scheduler, augmentation=AIRBENCH_AUGMENTATION),
    "resnet9": Recipe(
        defaults=dict(dataset="cifar10", model="resnet9", epochs=10, batch_size=512, optimizer="sgd", lr=0.4,
                      momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle", label_smoothing=0.2,
                      augment=True, data_on_device=True)),
    # as the PyTorch run it is compared with (torch_tiny_resnet18.py of the shared anchors): OneCycle rising
    # over a quarter of the steps, the last smaller batch dropped, crops of the image padded by reflection
    "tinyimagenet-resnet18": Recipe(
        defaults=dict(dataset="tiny-imagenet", model="resnet18", epochs=18, batch_size=256, optimizer="sgd", lr=0.2,
                      momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle", label_smoothing=0.1,
                      augment=True, data_on_device=True, drop_last=True),
        augmentation={"translate": 4, "padding_mode": "reflect", "flip": "random"},
        onecycle_rise=0.25, milestones=(0.5, 0.55, 0.6, 0.62, 0.64)),
}
