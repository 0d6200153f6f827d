"""A training run: build data, model and optimizer from a config, then loop
over epochs, writing everything a user needs into the run folder:

    RUN_DIR/config.json   the settings, so `eval`, `predict` and `--resume` rebuild the same run
    RUN_DIR/metrics.csv   one row per epoch
    RUN_DIR/last.ckpt     after every epoch (atomic), what `--resume` continues from
    RUN_DIR/best.ckpt     the epoch with the best test accuracy
    RUN_DIR/curves.png    loss and accuracy curves
"""
import csv
import json
import os

from tqdm import tqdm

from .. import cuda_is_available, device, manual_seed, models, optim
from ..data import DataLoader, load_dataset, transforms
from ..optim import lr_scheduler
from .checkpoint import load_checkpoint, save_checkpoint
from .graphed_step import graph_capturable
from .loop import evaluate, train_one_epoch
from .plots import plot_curves
from .precision import matmul_precision_of, resolve_precision

METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_time", "lr"]


def resolve_device(name):
    if name in (None, "auto"):
        return "cuda" if cuda_is_available() else "cpu"
    return name


def build_data(config, train):
    """The dataset of a config, wrapped in a loader with its transforms."""
    dataset = load_dataset(config["dataset"], data_dir=config.get("data_dir"), train=train)
    steps = []
    if train and config.get("augment"):
        steps += transforms.augmentation(config["dataset"], dataset)
    steps.append(transforms.Normalize(*dataset.normalization))
    loader = DataLoader(dataset, batch_size=config["batch_size"], shuffle=train, drop_last=False,
                        transform=transforms.Compose(steps), seed=config["seed"], num_workers=config.get("workers"),
                        device=config["device"])
    return dataset, loader


def build_model(config, dataset):
    c, h, w = dataset.image_shape
    model = models.get_model(config["model"], num_classes=len(dataset.classes), in_channels=c, image_size=h)
    return model.to(config["device"])


def build_optimizer(config, model):
    name, params = config["optimizer"], model.parameters()
    if name == "sgd":
        return optim.SGD(params, lr=config["lr"], momentum=config["momentum"], weight_decay=config["weight_decay"],
                         nesterov=config.get("nesterov", False))
    if name == "adam":
        return optim.Adam(params, lr=config["lr"], weight_decay=config["weight_decay"])
    if name == "adamw":
        return optim.AdamW(params, lr=config["lr"], weight_decay=config["weight_decay"])
    raise ValueError(f"unknown optimizer {name!r}; choose sgd, adam or adamw")


def build_scheduler(config, optimizer, steps_per_epoch):
    """(scheduler or None, whether it steps per batch). Warm-up is linear over
    `warmup` epochs, then the chosen schedule takes over."""
    name, epochs, warmup = config["schedule"], config["epochs"], config.get("warmup", 0)
    if name == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"], total_steps=epochs * steps_per_epoch), True
    main = {
        "none": None,
        "step": lambda: lr_scheduler.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1),
        "multistep": lambda: lr_scheduler.MultiStepLR(optimizer, milestones=[epochs // 2, 3 * epochs // 4],
                                                      gamma=0.1),
        "cosine": lambda: lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs - warmup)),
    }
    if name not in main:
        raise ValueError(f"unknown schedule {name!r}; choose none, step, multistep, cosine or onecycle")
    scheduler = main[name]() if main[name] else None
    if warmup:
        warm = lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=warmup)
        scheduler = warm if scheduler is None else lr_scheduler.SequentialLR(optimizer, [warm, scheduler], [warmup])
    return scheduler, False


def _write_metrics(rows, path):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def train(config, resume=False, show_progress=True, stop_after=None):
    """Run (or continue) training; returns the metric rows. `stop_after` ends
    the process's work after that many epochs, as an interruption would."""
    out = config["out"]
    os.makedirs(out, exist_ok=True)
    last_path = os.path.join(out, "last.ckpt")
    if resume:
        with open(os.path.join(out, "config.json")) as f:
            saved = json.load(f)
        saved["epochs"] = config["epochs"]
        config = saved
    config["device"] = resolve_device(config["device"])
    config["precision"] = resolve_precision(config.get("precision"), device(config["device"]))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with matmul_precision_of(config["precision"]):
        return _train(config, out, last_path, resume, show_progress, stop_after)


def _train(config, out, last_path, resume, show_progress, stop_after):
    manual_seed(config["seed"])
    train_set, train_loader = build_data(config, train=True)
    _, test_loader = build_data(config, train=False)
    model = build_model(config, train_set)
    optimizer = build_optimizer(config, model)
    scheduler, per_batch = build_scheduler(config, optimizer, len(train_loader))
    rows, start_epoch, best = [], 1, -1.0
    if resume:
        state = load_checkpoint(last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        rows, start_epoch, best = state["metrics"], state["epoch"] + 1, state["best_acc"]
        print(f"Resuming {out} after epoch {state['epoch']}")
    use_graph = config.get("cuda_graph", True) and graph_capturable(model, optimizer, device(config["device"]))
    print(f"Training {config['model']} on {config['dataset']} ({len(train_set)} images) on {config['device']} "
          f"in {config['precision']}" + (" (each step replayed from a CUDA graph)" if use_graph else ""))

    for done, epoch in enumerate(range(start_epoch, config["epochs"] + 1)):
        if stop_after is not None and done >= stop_after:
            break
        # every epoch's randomness comes from (seed, epoch), so a resumed run repeats it exactly
        manual_seed(config["seed"] * 1000 + epoch)
        train_loader.set_epoch(epoch)
        with tqdm(total=len(train_loader), desc=f"Epoch {epoch}", disable=not show_progress, leave=False) as bar:
            tr = train_one_epoch(model, train_loader, optimizer, scheduler, per_batch, progress=bar,
                                 label_smoothing=config.get("label_smoothing", 0.0), cuda_graph=use_graph,
                                 precision=config["precision"])
        with tqdm(total=len(test_loader), desc="  eval", disable=not show_progress, leave=False) as bar:
            te = evaluate(model, test_loader, progress=bar, precision=config["precision"])
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None and not per_batch:
            scheduler.step()
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "test_loss": te["loss"],
               "test_acc": te["acc"], "epoch_time": tr["time"], "lr": lr}
        rows.append(row)
        print(f"Epoch {epoch}: train_loss={tr['loss']:.4f} train_acc={tr['acc']:.4f} test_loss={te['loss']:.4f} "
              f"test_acc={te['acc']:.4f} epoch_time={tr['time']:.1f}s", flush=True)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                 "epoch": epoch, "best_acc": max(best, te["acc"]), "metrics": rows, "config": config}
        if te["acc"] > best:
            best = te["acc"]
            save_checkpoint(state, os.path.join(out, "best.ckpt"))
        save_checkpoint(state, last_path)
        _write_metrics(rows, os.path.join(out, "metrics.csv"))
        plot_curves(rows, os.path.join(out, "curves.png"))
    return rows


def load_run(run_dir, which="best", device=None):
    """(config, model, test loader) of a finished run, for `eval` and `predict`."""
    if not os.path.exists(os.path.join(run_dir, "config.json")):
        raise FileNotFoundError(f"{run_dir} is not a run folder (it has no config.json)")
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    config["device"] = resolve_device(device or config["device"])
    dataset, loader = build_data(config, train=False)
    model = build_model(config, dataset)
    model.load_state_dict(load_checkpoint(os.path.join(run_dir, f"{which}.ckpt"))["model"])
    return config, model, dataset, loader
