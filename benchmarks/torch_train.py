"""PyTorch twins of `mytensor train` jobs, to time the two side by side.

    python -m benchmarks.torch_train [--epochs 3] [--threads 1]
    python -m benchmarks.torch_train --recipe resnet9 [--epochs N] [--device cuda|cpu] [--limit K]

The settings come from mytensor itself (`RunConfig`, the recipe's defaults, `onecycle_options`,
`device_augmentation`), so a twin follows its job when that changes; the options given replace them
as they would `mytensor train`'s. The images come from the files `mytensor train` reads
(`MYTENSOR_DATA`), go to the device once as uint8 and are normalised as mytensor's loaders do,
batch by batch on the device.

With no recipe, `mytensor train`'s default job: LeNet-5 (`torch_models.lenet5`) on MNIST, 3 epochs
of batch 64 (the last batch smaller), SGD with momentum 0.9 under OneCycle (max lr 0.05, rising over
30% of the steps, momentum cycling 0.85..0.95), the mean cross-entropy.

`--recipe resnet9`: `mytensor train --recipe resnet9`: ResNet-9 (`torch_models.resnet9`) on
CIFAR-10, 10 epochs of batch 512 (the last smaller), SGD with Nesterov momentum 0.9 and weight
decay 5e-4 under OneCycle (max lr 0.4, rising over 30% of the steps, momentum cycling 0.85..0.95),
cross-entropy with label smoothing 0.2, and CIFAR-10's declared augmentation as mytensor's device
loader does it: every image shifted by up to 4 pixels each way (zeros coming in, as a random crop
of the padded image) and flipped left-right with probability 1/2, all drawn on the device every epoch.

On cuda a twin runs in PyTorch's best ordinary mode, as mytensor does on a GPU: bf16 autocast,
channels-last, `torch.backends.cudnn.benchmark`; on the CPU in fp32 (mytensor's precision there).
`--limit K` trains and tests on K images of each split, every (N/K)th of its N (a quick check).

It prints the settings used, one line per epoch in the format of `mytensor train` (the test set is
evaluated after every epoch; `epoch_time` is the training pass alone, between
`torch.cuda.synchronize()` calls on cuda) and last the total training time, evaluations left out,
with the first epoch apart: on cuda it includes cuDNN's benchmark warm-up.
"""
import argparse
import contextlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from mytensor.data.datasets import load_dataset
from mytensor.training.run import RunConfig, device_augmentation, onecycle_options

from .torch_models import get_model

TWINNED_RECIPES = ("resnet9",)
TOP_K = 5  # the second accuracy `mytensor train` prints
SUPPORTED = {"padding_mode": ("zeros",), "flip": (None, "random"), "cutout": (0,)}  # the DeviceLoader options done here


class DeviceImages:
    """A split's uint8 images and labels on `device`, yielded in batches normalised by the dataset's
    mean and std, and augmented as mytensor's `DeviceLoader` with `translate` and `flip`."""

    def __init__(self, dataset, device, limit=None, translate=0, flip=None, memory_format=torch.contiguous_format):
        every = slice(None, None, max(1, len(dataset) // limit)) if limit else slice(None)  # the classes are in order
        images = torch.tensor(np.asarray(dataset.images[every][:limit]), device=device)
        self.targets = torch.tensor(np.asarray(dataset.targets, np.int64)[every][:limit], device=device)
        self.translate, self.flip, self.memory_format = translate, flip == "random", memory_format
        self.shape = images.shape
        self.images = F.pad(images, (translate,) * 4) if translate else images  # black pixels beyond the border
        mean, std = (torch.tensor(v, dtype=torch.float32, device=device).view(-1, 1, 1) for v in dataset.normalization)
        self.scale, self.shift = 1 / (255 * std), -mean / std  # pixel * scale + shift = (pixel / 255 - mean) / std

    def __len__(self):
        return len(self.targets)

    def batches(self, batch_size, generator=None, drop_last=False):
        """(images, labels) batches; with a `generator`, in a random order and augmented."""
        n, device = len(self), self.targets.device
        order = torch.arange(n, device=device) if generator is None else \
            torch.randperm(n, device=device, generator=generator)
        augment = generator is not None and (self.translate or self.flip)
        if augment:
            corners = torch.randint(0, 2 * self.translate + 1, (n, 2), device=device, generator=generator)
            flips = torch.rand(n, device=device, generator=generator) < 0.5 if self.flip else None
        for start in range(0, n - n % batch_size if drop_last else n, batch_size):
            index = order[start: start + batch_size]
            part = slice(start, start + batch_size)
            x = self.crops(index, corners[part], flips[part] if self.flip else None) if augment else self.images[index]
            x = (x.float() * self.scale + self.shift).contiguous(memory_format=self.memory_format)
            yield x, self.targets[index]

    def crops(self, index, corners, flips):
        """The (H, W) window of each padded image at its corner (top, left), mirrored where `flips`:
        one gather."""
        _, c, h, w = self.shape
        device = index.device
        rows = corners[:, :1] + torch.arange(h, device=device)
        cols = torch.arange(w, device=device).expand(len(index), w)
        if flips is not None:
            cols = torch.where(flips[:, None], w - 1 - cols, cols)
        cols = cols + corners[:, 1:]
        channels = torch.arange(c, device=device)
        return self.images[index[:, None, None, None], channels[None, :, None, None], rows[:, None, :, None],
                           cols[:, None, None, :]]


def sums(logits, y, loss):
    """(summed loss, top-1 hits, top-5 hits) of a batch, on the device."""
    hits = logits.float().topk(min(TOP_K, logits.shape[1]), 1).indices == y[:, None]
    return torch.stack([loss.detach().float() * len(y), hits[:, 0].sum().float(), hits.any(1).sum().float()])


def train_epoch(model, optimizer, scheduler, batches, precision, label_smoothing=0.0):
    """One pass over `batches`, the scheduler stepped every batch; (loss, acc, acc5) as device scalars."""
    model.train()
    total, count = 0, 0
    for x, y in batches:
        with precision():
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total, count = total + sums(logits, y, loss), count + len(y)
    return total / count


def evaluate(model, batches, precision):
    """(loss, acc, acc5) over `batches`, the plain mean cross-entropy."""
    model.eval()
    total, count = 0, 0
    with torch.no_grad(), precision():
        for x, y in batches:
            logits = model(x)
            total, count = total + sums(logits, y, F.cross_entropy(logits, y)), count + len(y)
    return (total / count).tolist()


def settings(**groups):
    """'name(key=value, ...)' for each group of settings, in one line (floats as %g)."""
    def group(values):
        return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    return " ".join(f"{name}({group(values)})" for name, values in groups.items())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", choices=TWINNED_RECIPES, help="the recipe of `mytensor train --recipe` to twin "
                   "(default: mytensor train's default job)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda if there is a GPU")
    p.add_argument("--limit", type=int, help="train and test on LIMIT images of each split, spread over it")
    p.add_argument("--threads", type=int, default=1, help="PyTorch's intra-op threads on the CPU (default 1)")
    args = p.parse_args(argv)
    config = RunConfig.from_options({"recipe": args.recipe, "epochs": args.epochs, "batch_size": args.batch_size,
                                     "lr": args.lr})
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    torch.set_num_threads(args.threads)
    torch.manual_seed(config.seed)
    torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    precision = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext

    train_set, test_set = (load_dataset(config.dataset, data_dir=config.data_dir, train=t) for t in (True, False))
    augmentation = device_augmentation(config, train_set)
    unsupported = {k: v for k, v in augmentation.items() if k != "translate" and v not in SUPPORTED.get(k, ())}
    if unsupported:
        raise SystemExit(f"the twin does not do the augmentation {unsupported}")
    train = DeviceImages(train_set, device, args.limit, augmentation.get("translate", 0), augmentation.get("flip"),
                         memory_format)
    test = DeviceImages(test_set, device, args.limit, memory_format=memory_format)
    c, h, _ = train_set.image_shape
    model = get_model(config.model, num_classes=len(train_set.classes), in_channels=c, image_size=h)
    model.to(device, memory_format=memory_format)
    sgd = dict(lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay)
    optimizer = torch.optim.SGD(model.parameters(), **sgd)
    steps = len(train) // config.batch_size if config.drop_last else -(-len(train) // config.batch_size)
    onecycle = dict(total_steps=config.epochs * steps, **onecycle_options(config))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, **onecycle)
    threads = "" if cuda else f", {torch.get_num_threads()} thread(s)"
    print(f"Training {config.model} on {config.dataset} ({len(train)} images) with PyTorch {torch.__version__} on "
          f"{device} in {'bf16' if cuda else 'fp32'}" + (f" with the {config.recipe} recipe" if config.recipe else "")
          + threads, flush=True)
    print(settings(SGD=sgd, OneCycleLR=onecycle, loss=dict(label_smoothing=config.label_smoothing),
                   batches=dict(batch_size=config.batch_size, drop_last=config.drop_last, epochs=config.epochs),
                   augmentation=augmentation), flush=True)

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times = []
    for epoch in range(1, config.epochs + 1):
        generator = torch.Generator(device).manual_seed(config.seed * 1000 + epoch)  # the epoch's order and draws
        sync()
        start = time.perf_counter()
        batches = train.batches(config.batch_size, generator, config.drop_last)
        tr = train_epoch(model, optimizer, scheduler, batches, precision, config.label_smoothing)
        sync()
        times.append(time.perf_counter() - start)
        loss, acc, acc5 = tr.tolist()
        test_loss, test_acc, test_acc5 = evaluate(model, test.batches(config.batch_size), precision)
        print(f"Epoch {epoch}: train_loss={loss:.4f} train_acc={acc:.4f} train_acc5={acc5:.4f} "
              f"test_loss={test_loss:.4f} test_acc={test_acc:.4f} test_acc5={test_acc5:.4f} "
              f"epoch_time={times[-1]:.1f}s", flush=True)
    first = f"epoch 1: {times[0]:.2f} s" + (", with cuDNN's benchmark warm-up" if cuda else "")
    n = len(times)
    others = "" if n == 1 else f"; epoch{'s 2-' if n > 2 else ' '}{n}: {sum(times[1:]):.2f} s"
    print(f"Training time: {sum(times):.2f} s ({first}{others})", flush=True)


if __name__ == "__main__":
    main()
