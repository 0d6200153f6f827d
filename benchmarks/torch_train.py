"""PyTorch twin of `mytensor train`'s default job, to time the two side by side.

    python -m benchmarks.torch_train [--epochs 3] [--threads 1]

The same recipe as `mytensor train` with no options: LeNet-5 (`torch_models.lenet5`) on
MNIST, 3 epochs of batch 64 reshuffled every epoch (the last batch smaller), the images
scaled to 0..1 and normalised by the training set's mean and std, SGD with momentum 0.9
under OneCycle (max lr 0.05, rising over 30% of the steps, momentum cycling 0.85..0.95),
the mean cross-entropy, and the test set evaluated after every epoch. The images come
from the files `mytensor train` reads (`MYTENSOR_DATA`) and stay in memory as uint8;
each batch is converted on the training thread. It prints one line per epoch in the
format of `mytensor train`, `epoch_time` being the training pass alone as there.
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from mytensor.data.datasets import load_dataset

from .torch_models import lenet5


def batches(images, targets, mean, std, batch_size, order=None):
    """(x, y) batches of uint8 images, normalised as mytensor's `Normalize` does."""
    n = len(images)
    index = torch.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        i = index[start: start + batch_size]
        yield (images[i].float().mul_(1 / 255).sub_(mean).div_(std)), targets[i]


def evaluate(model, data):
    model.eval()
    loss = correct = count = 0
    start = time.perf_counter()
    with torch.no_grad():
        for x, y in data:
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
    return loss / count, correct / count, time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1, help="PyTorch's intra-op threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train, test = load_dataset("mnist", train=True), load_dataset("mnist", train=False)
    mean, std = train.normalization[0][0], train.normalization[1][0]
    images, targets = torch.tensor(train.images), torch.tensor(np.asarray(train.targets, np.int64))
    test_images, test_targets = torch.tensor(test.images), torch.tensor(np.asarray(test.targets, np.int64))
    model = lenet5(num_classes=10, in_channels=1, image_size=28)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    steps = -(-len(images) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps, pct_start=0.3,
                                                cycle_momentum=True, base_momentum=0.85, max_momentum=0.95)
    print(f"Training lenet5 on mnist ({len(images)} images) with PyTorch {torch.__version__} on the CPU, "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    total = 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(images))
        loss_sum = torch.zeros(()); correct = torch.zeros((), dtype=torch.int64)
        start = time.perf_counter()
        for x, y in batches(images, targets, mean, std, args.batch_size, order):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
        epoch_time = time.perf_counter() - start
        total += epoch_time
        test_loss, test_acc, _ = evaluate(model, batches(test_images, test_targets, mean, std, args.batch_size))
        print(f"Epoch {epoch}: train_loss={loss_sum.item() / len(images):.4f} "
              f"train_acc={correct.item() / len(images):.4f} test_loss={test_loss:.4f} test_acc={test_acc:.4f} "
              f"epoch_time={epoch_time:.1f}s", flush=True)
    print(f"Training time: {total:.1f} s", flush=True)


if __name__ == "__main__":
    main()
