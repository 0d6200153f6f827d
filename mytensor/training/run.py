"""A training run: build data, model and optimizer from a `RunConfig`, then loop
over epochs, writing everything a user needs into the run folder:

    RUN_DIR/config.json   the settings, so `eval`, `predict` and `--resume` rebuild the same run
    RUN_DIR/metrics.csv   one row per epoch
    RUN_DIR/last.ckpt     after every epoch, what `--resume` continues from
    RUN_DIR/best.ckpt     the epoch with the best test accuracy
    RUN_DIR/curves.png    loss and accuracy curves
    RUN_DIR/.lock         locked by the one process training into the folder

With `gpus` above 1, one process per GPU trains (started by `mytensor.distributed.run`), each on
its shard of every epoch with the gradients averaged (`DistributedDataParallel`); rank 0 alone
evaluates, prints and writes the folder.

Every file is written atomically (`atomic_write`), so a run killed at any moment
leaves a folder that `eval` reads and `--resume` continues. A new run refuses a
folder that holds files (unless `overwrite`); a failed start-up writes nothing.
"""
import contextlib
import csv
import dataclasses
import json
import math
import os
import socket
import statistics
import time
from pathlib import Path

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .. import channels_last, cuda_is_available, device, manual_seed, models, nn, optim, tensor
from ..amp import GradScaler
from ..backend import get_backend
from ..backends import cudnn
from ..data import DataLoader, DeviceLoader, DistributedSampler, declared_augmentation, load_dataset, transforms
from ..data.dataset import to_float
from ..distributed import init_process_group, is_initialized, launched
from ..distributed.process_group import default_group
from ..nn.parallel import DistributedDataParallel
from ..optim import lr_scheduler
from ..serialization import atomic_write, remove_temporaries
from .checkpoint import load_checkpoint, save_checkpoint
from .loop import TTA, EvaluationStep, TrainingStep, evaluate, train_one_epoch
from .plots import plot_curves
from .precision import PRECISIONS, matmul_precision_of, resolve_precision
from .recipes import RECIPES, Recipe

# top-5 and the total time came later: their columns follow the others, so each older column keeps its place.
# elapsed: the seconds of training up to the end of the epoch (`fit_to_data` included, evaluations left out);
# test_time: the seconds the epoch's evaluation took
METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_time", "lr", "train_acc5",
                 "test_acc5", "elapsed", "test_time"]
RUN_FILES = ("config.json", "metrics.csv", "last.ckpt", "best.ckpt", "curves.png")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "multistep", "cosine", "onecycle", "recipe")
NO_RECIPE = Recipe(defaults={})
ONECYCLE_MOMENTUM_SPREAD = 0.05  # OneCycle moves SGD's momentum to --momentum -/+ this (0.85..0.95 around 0.9)


@dataclasses.dataclass
class RunConfig:
    """Everything that defines a run, each default written once here. `mytensor
    train` fills it from its options, config.json stores it, and `eval`,
    `predict` and `--resume` rebuild the run from it."""

    dataset: str = "mnist"
    model: str = "lenet5"
    recipe: str | None = None  # see `training.recipes`: its defaults fill the options not given
    epochs: int = 3
    batch_size: int = 64  # per process (GPU): a step of `gpus` processes takes gpus x batch_size images
    gpus: int = 1  # processes training together, one per GPU (the learning rate is not scaled with them)
    drop_last: bool = False  # leave out the last training batch when it is smaller
    optimizer: str = "sgd"
    lr: float | None = None  # None: 0.05 for sgd, 0.001 for adam and adamw
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    warmup: int = 0
    label_smoothing: float = 0.0
    tta: str = "none"  # test-time augmentation, see `loop.tta_logits`
    augment: bool = False
    data_on_device: bool = False  # the dataset held on the device, batches augmented there (`DeviceLoader`)
    image_size: int | None = None
    skip_bad_images: bool = False
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # see `training.precision`
    cuda_graph: bool = True
    workers: int | None = None
    threads: int | None = None
    data_dir: str | None = None
    out: str | None = None
    resolved_device: str | None = None  # what `device` meant where the run last trained (`auto` -> cpu or cuda)
    resolved_precision: str | None = None  # and what `precision` meant there (`auto` -> bf16 or fp32)

    # what may differ when a run is resumed: where and how fast it runs, and for how long
    RESUMABLE = ("epochs", "device", "precision", "cuda_graph", "workers", "threads", "data_dir", "out",
                 "resolved_device", "resolved_precision")
    # what every config.json has held (the other keys came later and default when missing)
    REQUIRED = ("dataset", "model", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
                "schedule", "seed", "device", "out")

    def __post_init__(self):
        if self.lr is None and self.optimizer in OPTIMIZERS:
            self.lr = 0.05 if self.optimizer == "sgd" else 0.001
        for name in ("dataset", "data_dir", "out"):
            setattr(self, name, _absolute(name, getattr(self, name)))
        self._validate()

    def _validate(self):
        """One clear line for the first setting out of range."""
        _require(self.optimizer in OPTIMIZERS, f"--optimizer {self.optimizer!r}: choose {', '.join(OPTIMIZERS)}")
        _require(self.schedule in SCHEDULES, f"--schedule {self.schedule!r}: choose {', '.join(SCHEDULES)}")
        _require(self.recipe is None or self.recipe in RECIPES,
                 f"--recipe {self.recipe!r}: choose {', '.join(RECIPES)}")
        _require(self.schedule != "recipe" or recipe_of(self).scheduler is not None,
                 f"--schedule recipe is the schedule of a recipe that has one "
                 f"({', '.join(k for k, r in RECIPES.items() if r.scheduler)}), not of --recipe {self.recipe}")
        _require(recipe_of(self).optimizer is None or self.optimizer == "sgd",
                 f"--recipe {self.recipe} builds its own optimizer, with SGD for the parameters that --lr, "
                 f"--momentum and --weight-decay set: --optimizer {self.optimizer} does not apply")
        _require(self.tta in TTA, f"--tta {self.tta!r}: choose {', '.join(TTA)}")
        _require(self.model in models.available_models(),
                 f"unknown model {self.model!r}; available: {', '.join(models.available_models())}")
        _require(_whole(self.epochs) and self.epochs >= 1, f"--epochs must be 1 or more, got {self.epochs!r}")
        _require(_whole(self.batch_size) and self.batch_size >= 1,
                 f"--batch-size must be 1 or more, got {self.batch_size!r}")
        _require(_whole(self.gpus) and self.gpus >= 1, f"--gpus must be 1 or more, got {self.gpus!r}")
        _require(_finite(self.lr) and self.lr > 0, f"--lr must be a finite number above 0, got {self.lr!r}")
        _require(_finite(self.momentum) and 0 <= self.momentum < 1,
                 f"--momentum must be at least 0 and below 1, got {self.momentum!r}")
        _require(not self.nesterov or self.momentum > 0, "--nesterov needs a --momentum above 0")
        _require(_finite(self.weight_decay) and self.weight_decay >= 0,
                 f"--weight-decay must be a finite number, 0 or more, got {self.weight_decay!r}")
        _require(_whole(self.warmup) and 0 <= self.warmup < self.epochs,
                 f"--warmup must be 0 or more and fewer than --epochs {self.epochs}, got {self.warmup!r}")
        _require(_finite(self.label_smoothing) and 0 <= self.label_smoothing < 1,
                 f"--label-smoothing must be at least 0 and below 1, got {self.label_smoothing!r}")
        if self.schedule == "onecycle" and self.optimizer == "sgd" and self.momentum > 0:
            low, high = self.momentum - ONECYCLE_MOMENTUM_SPREAD, self.momentum + ONECYCLE_MOMENTUM_SPREAD
            _require(low >= 0 and high < 1, f"--momentum {self.momentum}: with --schedule onecycle the momentum "
                     f"cycles over {low:.2f}..{high:.2f}, which must stay within [0, 1); choose 0 (no momentum) or "
                     f"from {ONECYCLE_MOMENTUM_SPREAD} to below {1 - ONECYCLE_MOMENTUM_SPREAD}")
        for name in ("image_size", "threads"):
            value = getattr(self, name)
            _require(value is None or (_whole(value) and value >= 1), f"{_flag(name)} must be 1 or more, got {value!r}")
        _require(self.workers is None or (_whole(self.workers) and self.workers >= 0),
                 f"--workers must be 0 or more, got {self.workers!r}")
        _require(_whole(self.seed), f"--seed must be a whole number, got {self.seed!r}")
        for name in ("nesterov", "augment", "skip_bad_images", "cuda_graph", "drop_last", "data_on_device"):
            value = getattr(self, name)
            _require(isinstance(value, bool), f"{name} must be true or false, got {value!r}")
        _require(isinstance(self.dataset, str), f"--dataset must be a name or folder:PATH, got {self.dataset!r}")
        _require(self.device == "auto" or _parses_as_device(self.device),
                 f"--device {self.device!r}: choose cpu, cuda, cuda:N or auto")
        _require(self.precision in ("auto",) + PRECISIONS,
                 f"--precision {self.precision!r}: choose auto, {', '.join(PRECISIONS)}")

    @classmethod
    def from_options(cls, given):
        """A new run's config from the options given (the others: the recipe's, if one is given,
        else the defaults); an option that the chosen optimizer would ignore is an error, not a no-op."""
        cls._check_known(given)
        given = {k: v for k, v in given.items() if v is not None}
        recipe = given.get("recipe")
        _require(recipe is None or recipe in RECIPES, f"--recipe {recipe!r}: choose {', '.join(RECIPES)}")
        optimizer = given.get("optimizer", RECIPES[recipe].defaults.get("optimizer") if recipe else cls.optimizer)
        ignored = [_flag(k) for k in ("momentum", "nesterov") if k in given and optimizer != "sgd"]
        _require(not ignored, f"{' and '.join(ignored)} apply to --optimizer sgd only, not {optimizer}")
        return cls(**{**(RECIPES[recipe].defaults if recipe else {}), **given})

    def resumed_with(self, given):
        """This saved config continued with the options given to `--resume`: those in
        RESUMABLE replace the saved ones, any other must equal its saved value."""
        self._check_known(given)
        given = {k: _absolute(k, v) for k, v in given.items() if v is not None}
        changed = [f"{_flag(k)} {v!r} (saved: {getattr(self, k)!r})" for k, v in given.items()
                   if k not in self.RESUMABLE and v != getattr(self, k)]
        _require(not changed, f"--resume continues the run in {given.get('out', self.out)} with its saved "
                 f"settings, and these cannot change: {', '.join(changed)}; start a new run (another --out, or "
                 f"--overwrite) to change them")
        return dataclasses.replace(self, **{k: v for k, v in given.items() if k in self.RESUMABLE})

    @classmethod
    def field_names(cls):
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _check_known(cls, given):
        unknown = [k for k in given if k not in cls.field_names()]
        _require(not unknown, f"unknown setting(s) {', '.join(unknown)}")

    @classmethod
    def load(cls, path):
        """The config stored in `path` (config.json); any problem names the file and the key."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{Path(path).parent} is not a run folder (it has no config.json)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON ({e}); it is damaged") from None
        _require(isinstance(data, dict), f"{path} holds no settings (a JSON object was expected)")
        missing = [k for k in cls.REQUIRED if k not in data]
        unknown = [k for k in data if k not in cls.field_names()]
        _require(not missing, f"{path} is incomplete: no {', '.join(map(repr, missing))}")
        _require(not unknown, f"{path}: unknown key(s) {', '.join(map(repr, unknown))}")
        try:
            return cls(**data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def save(self, path):
        with atomic_write(path, "w") as f:
            json.dump(dataclasses.asdict(self), f, indent=2)


def recipe_of(config):
    """The config's recipe, or one without pieces."""
    return RECIPES.get(config.recipe, NO_RECIPE)


def _require(ok, message):
    if not ok:
        raise ValueError(message)


def _whole(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _flag(name):
    return "--" + name.replace("_", "-")


def _parses_as_device(name):
    try:
        device(name)
    except (TypeError, ValueError):
        return False
    return True


def _absolute(name, value):
    """Paths are stored absolute, so a run folder works from any directory."""
    if isinstance(value, str) and name in ("data_dir", "out"):
        return str(Path(value).expanduser().absolute())
    if isinstance(value, str) and name == "dataset" and value.startswith("folder:") and value != "folder:":
        return "folder:" + str(Path(value[len("folder:"):]).expanduser().absolute())
    return value


def resolve_device(name):
    """The device to run on: `auto` is the GPU if there is one; a GPU that is not
    usable here is an error that says how to run on the CPU instead."""
    if name == "auto":
        return "cuda" if cuda_is_available() else "cpu"
    try:
        get_backend(name)
    except RuntimeError as e:
        raise RuntimeError(f"device {name}: {e}; to run on the CPU instead, pass --device cpu") from None
    return name


def cpu_threads(threads=None, workers=None):
    """(BLAS threads, loader threads) for `threads` cores (default: all this process may
    use): loader threads take up to half of them (at most 4), the training step's BLAS
    the rest, so the two never compete for a core. BLAS threads that outnumber the free
    cores spin waiting for each other, which made a busy 2-core machine 6-13x slower."""
    cores = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    workers = min(4, cores // 2) if workers is None else workers
    return max(1, cores - workers), workers


def process_group_of(config, group=None):
    """The process group of a data-parallel run, or None for one process: `group` if given, else
    in a process that `mytensor.distributed.run` started, the NCCL group of them all."""
    if group is not None or not launched():
        _require(group is not None or config.gpus == 1, f"--gpus {config.gpus} trains in one process per GPU: "
                 f"start it with `mytensor train --gpus {config.gpus}` or `python -m mytensor.distributed.run`")
        return group
    _require(device(config.resolved_device).type == "cuda",
             f"--device {config.device}: training in several processes runs on GPUs (their gradients go over NCCL)")
    if not is_initialized():
        init_process_group("nccl")
    return default_group()


def build_data(config, train, workers=0, group=None):
    """The dataset of a config and its loader: a `DeviceLoader` with `data_on_device` (the
    recipe's augmentation, else the dataset's), else a `DataLoader` with the dataset's transforms.
    With a process `group`, each rank's training loader yields its shard of every epoch."""
    dataset = load_dataset(config.dataset, data_dir=config.data_dir, train=train, image_size=config.image_size,
                           skip_bad_images=config.skip_bad_images)
    augment, drop_last = train and config.augment, train and config.drop_last
    rank, ranks = (group.rank, group.size) if train and group is not None else (0, 1)
    if config.data_on_device:
        augmentation = device_augmentation(config, dataset) if train else {}
        return dataset, DeviceLoader(dataset, batch_size=config.batch_size, shuffle=train, drop_last=drop_last,
                                     seed=config.seed, device=config.resolved_device, num_replicas=ranks, rank=rank,
                                     **augmentation)
    steps = transforms.augmentation(dataset) if augment else []
    steps.append(transforms.Normalize(*dataset.normalization))
    shard = {"sampler": DistributedSampler(dataset, ranks, rank, seed=config.seed)} if ranks > 1 else \
        {"shuffle": train}
    loader = DataLoader(dataset, batch_size=config.batch_size, drop_last=drop_last, transform=transforms.Compose(steps),
                        seed=config.seed + rank, num_workers=workers, device=config.resolved_device, **shard)
    return dataset, loader


def device_augmentation(config, dataset):
    """The `DeviceLoader` augmentation options of a config's training set: the recipe's, else the
    dataset's declared one (`declared_augmentation`); none without `augment`."""
    return (recipe_of(config).augmentation or declared_augmentation(dataset)) if config.augment else {}


def build_model(config, dataset):
    c, h, w = dataset.image_shape
    model = models.get_model(config.model, num_classes=len(dataset.classes), in_channels=c, image_size=h)
    model.to(config.resolved_device)
    if config.resolved_precision in ("bf16", "fp16") and device(config.resolved_device).type == "cuda":
        model.to(memory_format=channels_last)  # the tensor-core convolutions' layout: no weight copies a step
    return model


def fit_to_data(model, data, count=5000):
    """Fit the model's data-dependent layers (`nn.PatchWhitening`, the first layer) to `count`
    training images spread over the set, normalised as the loaders normalise them. `data`: the
    dataset, or a `DeviceLoader` of it, whose images are on the device already (normalised there,
    the run's time spends no host pass over them and no float32 upload)."""
    layers = [m for m in model.modules() if isinstance(m, nn.PatchWhitening)]
    if layers:
        dataset, device = getattr(data, "dataset", data), next(model.parameters()).device
        index = range(0, len(dataset), max(1, len(dataset) // count))[:count]
        if isinstance(data, DeviceLoader):
            images = data.normalized(index).to(device)
        else:
            images = transforms.Normalize(*dataset.normalization)(to_float(dataset.images[index]))
            images = tensor(images, device=device)
        for layer in layers:
            layer.fit(images)


def build_optimizer(config, model):
    recipe = recipe_of(config)
    if recipe.optimizer:
        return recipe.optimizer(model, config)
    params = recipe.param_groups(model, config) if recipe.param_groups else model.parameters()
    if config.optimizer == "sgd":
        return optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                         nesterov=config.nesterov)
    cls = optim.Adam if config.optimizer == "adam" else optim.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(config, optimizer, steps_per_epoch):
    """(scheduler or None, whether it steps per batch). Warm-up is linear over
    `warmup` epochs, then the chosen schedule takes over; OneCycle's own rise takes
    `warmup` epochs when given (else the recipe's share of the run, 30% without one),
    and cycles SGD's momentum around `--momentum`."""
    name, epochs, warmup = config.schedule, config.epochs, config.warmup
    if name == "recipe":
        return recipe_of(config).scheduler(config, optimizer, steps_per_epoch), True
    if name == "onecycle":
        total = epochs * steps_per_epoch
        return lr_scheduler.OneCycleLR(optimizer, total_steps=total, **onecycle_options(config)), True
    main = {
        "none": None,
        "step": lambda: lr_scheduler.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1),
        "multistep": lambda: lr_scheduler.MultiStepLR(optimizer, milestones=[epochs // 2, 3 * epochs // 4],
                                                      gamma=0.1),
        "cosine": lambda: lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs - warmup)),
    }
    scheduler = main[name]() if main[name] else None
    if warmup:
        warm = lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=warmup)
        scheduler = warm if scheduler is None else lr_scheduler.SequentialLR(optimizer, [warm, scheduler], [warmup])
    return scheduler, False


def onecycle_options(config):
    """OneCycleLR's options for a config, all but total_steps (PyTorch's OneCycleLR takes the same):
    the lr rises to --lr over `warmup` epochs when given, else over the recipe's share of the run,
    and SGD's momentum cycles over --momentum -/+ ONECYCLE_MOMENTUM_SPREAD."""
    options = {"max_lr": config.lr,
               "pct_start": config.warmup / config.epochs if config.warmup else recipe_of(config).onecycle_rise}
    if config.optimizer == "sgd":
        options.update(cycle_momentum=config.momentum > 0, base_momentum=config.momentum - ONECYCLE_MOMENTUM_SPREAD,
                       max_momentum=config.momentum + ONECYCLE_MOMENTUM_SPREAD)
    return options


def _restore(state, model, optimizer, scheduler, per_batch, steps_per_epoch, scaler, lookahead):
    """Load a checkpoint's weights and optimizer state, and bring the schedule to the
    step it was saved at by replaying it: the schedule is rebuilt from the config,
    so with a larger --epochs it is the schedule of the longer run, continued from
    there. The optimizer keeps the settings (lr, momentum) that schedule gives."""
    model.load_state_dict(state["model"])
    if scheduler is not None:
        for _ in range(state["epoch"] * (steps_per_epoch if per_batch else 1)):
            scheduler.step()
    saved = state["optimizer"]
    groups = [{**s, **{k: v for k, v in g.items() if k != "params"}}
              for s, g in zip(saved["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict({"state": saved["state"], "param_groups": groups})
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if lookahead is not None:
        lookahead.load_state_dict(state["lookahead"])


def _write_metrics(rows, path):
    with atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


@contextlib.contextmanager
def _locked(folder):
    """Hold `folder/.lock` for the life of a run. The kernel drops an flock when its
    process ends, however it ends (SIGKILL included), so a stale lock never blocks."""
    import fcntl
    with open(folder / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise RuntimeError(f"{folder} is in use by another training process ({f.read().strip() or 'unknown'}); "
                               f"wait for it to end, or train into another --out") from None
        f.truncate(0)
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield


def _new_run_folder(config):
    """runs/DATASET-MODEL-TIME, made here (with a -2, -3... if that exists) so two runs never share one."""
    tag = config.dataset.replace("folder:", "folder-").replace(os.sep, "_").strip("_")
    base = Path("runs").absolute() / f"{tag}-{config.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 1000):
        folder = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"{base} and 998 like it exist already; pass --out")


def _check_new_run(folder, overwrite):
    """A new run goes into a folder that does not exist or holds no files (hidden
    leftovers aside); with overwrite, the files of a run there are replaced."""
    if not folder.is_dir():
        return
    files = sorted(e.name for e in os.scandir(folder) if not e.name.startswith("."))
    if overwrite:
        others = [f for f in files if f not in RUN_FILES]
        _require(not others, f"--overwrite replaces a run, but {folder} holds other files too "
                 f"({', '.join(others[:5])}); choose another --out")
        return
    if any(f in RUN_FILES for f in files):
        raise FileExistsError(f"{folder} holds a run already ({', '.join(files[:5])}): continue it with --resume, "
                              f"replace it with --overwrite, or choose another --out")
    _require(not files, f"{folder} is not empty ({', '.join(files[:5])}); choose an empty or new --out")


def train(options, resume=False, overwrite=False, show_progress=True, stop_after=None, group=None):
    """Train a new run, or with `resume` continue the one in `options["out"]`; returns
    the metric rows. `options`: a RunConfig, or a dict of the settings given (the
    rest default; with `resume`, the saved ones). `stop_after` ends the process's work
    after that many epochs, as an interruption would. `group`: the process group of a
    data-parallel run (default: see `process_group_of`); its other ranks return no rows."""
    given = dataclasses.asdict(options) if isinstance(options, RunConfig) else dict(options)
    _require(not (resume and overwrite), "--resume continues a run and --overwrite replaces it: choose one")
    if resume:
        _require(given.get("out"), "--resume needs --out RUN_DIR, the folder of the run to continue")
        config = RunConfig.load(Path(given["out"]).expanduser() / "config.json").resumed_with(given)
    else:
        config = options if isinstance(options, RunConfig) else RunConfig.from_options(given)
    blas_threads, workers = cpu_threads(config.threads, config.workers)
    with threadpool_limits(blas_threads, user_api="blas"):
        config = dataclasses.replace(config, resolved_device=resolve_device(config.device))
        config = dataclasses.replace(config, resolved_precision=resolve_precision(
            config.precision, device(config.resolved_device)))
        group = process_group_of(config, group)
        primary = group is None or group.rank == 0  # the one process that evaluates, prints and writes
        if primary and not resume and config.out is not None:
            _check_new_run(Path(config.out), overwrite)  # fail before the slow start-up, not after
        manual_seed(config.seed)
        train_set, train_loader = build_data(config, train=True, workers=workers, group=group)
        _, test_loader = build_data(config, train=False, workers=workers)
        model = build_model(config, train_set)
        optimizer = build_optimizer(config, model)
        scheduler, per_batch = build_scheduler(config, optimizer, len(train_loader))
        scaler = GradScaler(config.resolved_device) if config.resolved_precision == "fp16" else None
        make_lookahead = recipe_of(config).lookahead
        lookahead = make_lookahead(model, config.epochs * len(train_loader)) if make_lookahead else None

        if primary:
            out = Path(config.out) if config.out is not None else _new_run_folder(config)
            out.mkdir(parents=True, exist_ok=True)
            config = dataclasses.replace(config, out=str(out))
        else:  # reads the run folder to resume, never writes it
            out = Path(config.out) if config.out is not None else None
        with _locked(out) if primary else contextlib.nullcontext():
            if primary:
                remove_temporaries(out)
            rows, done, best = [], 0, -1.0
            if resume and (out / "last.ckpt").exists():
                state = load_checkpoint(out / "last.ckpt")
                done, rows, best = state["epoch"], state["metrics"], state["best_acc"]
                _require(done < config.epochs, f"{out} has trained {done} epochs and its --epochs is "
                         f"{config.epochs}: give --epochs N with N above {done} to train it further")
                _restore(state, model, optimizer, scheduler, per_batch, len(train_loader), scaler, lookahead)
                if primary:
                    print(f"Resuming {out} after epoch {done} of {config.epochs}")
            elif not resume and primary:
                _check_new_run(out, overwrite)  # again, now that no other process can write here
                for name in RUN_FILES:
                    (out / name).unlink(missing_ok=True)
            if primary:
                config.save(out / "config.json")
            # the convolutions time their candidate kernels at each new shape (the first steps run eagerly)
            with matmul_precision_of(config.resolved_precision), cudnn.flags(enabled=True, benchmark=True):
                rows = _train_epochs(config, out, model, optimizer, scheduler, per_batch, train_loader, test_loader,
                                     rows, done, best, show_progress, stop_after, scaler, lookahead, group)
    if primary:
        print(f"Run folder: {out}")
    return rows if primary else []


def train_runs(options, runs, overwrite=False, show_progress=True):
    """`runs` new runs of the same settings with the seeds seed, seed + 1, ..., each into OUT/run-K
    (or a new folder of its own without --out); prints the mean and standard deviation of their
    final test accuracy and returns the accuracies."""
    config = options if isinstance(options, RunConfig) else RunConfig.from_options(options)
    finals = []
    for k in range(runs):
        out = None if config.out is None else str(Path(config.out) / f"run-{k + 1}")
        rows = train(dataclasses.replace(config, seed=config.seed + k, out=out), overwrite=overwrite,
                     show_progress=show_progress)
        finals.append(rows[-1]["test_acc"])
    spread = statistics.stdev(finals) if runs > 1 else 0.0
    print(f"{runs} runs (seeds {config.seed}..{config.seed + runs - 1}): final test_acc mean "
          f"{statistics.mean(finals):.4f} std {spread:.4f} (min {min(finals):.4f}, max {max(finals):.4f})", flush=True)
    return finals


def _train_epochs(config, out, model, optimizer, scheduler, per_batch, train_loader, test_loader, rows, done,
                  best, show_progress, stop_after, scaler, lookahead, group=None):
    """Epochs `done + 1` to `config.epochs`, each saved as it ends; an interruption
    or a failure leaves the folder as it was after the last finished epoch. A new run
    first fits the model's data-dependent layers (`fit_to_data`), part of its time.
    With a process `group`, every rank trains and rank 0 alone evaluates and records."""
    rank, ranks = (group.rank, group.size) if group is not None else (0, 1)
    # NCCL's collectives are not recorded into the step's CUDA graph: several processes step eagerly
    use_graph = config.cuda_graph and device(config.resolved_device).type == "cuda" and group is None
    if not rank:
        print(f"Training {config.model} on {config.dataset} ({len(train_loader.dataset)} images) on "
              f"{config.resolved_device} in {config.resolved_precision}"
              + (f" with the {config.recipe} recipe" if config.recipe else "")
              + (" (each step replayed from a CUDA graph where it can be)" if use_graph else "")
              + f", into {out}", flush=True)
    if ranks > 1 and not rank:
        print(f"Data parallel over {ranks} processes: a step takes {ranks} x {config.batch_size} = "
              f"{ranks * config.batch_size} images (--batch-size is per process) at --lr {config.lr:g}, not scaled "
              f"with the processes; train metrics are rank 0's shard, test metrics the whole test set", flush=True)
    start = epoch = done
    elapsed = rows[-1].get("elapsed", 0.0) if rows else 0.0
    if not done:
        began = time.perf_counter()
        fit_to_data(model, train_loader)
        elapsed += time.perf_counter() - began
    net = model if group is None else DistributedDataParallel(model, process_group=group)  # from rank 0's weights
    step = TrainingStep(net, optimizer, config.label_smoothing, config.resolved_precision, scaler, use_graph)
    evaluation = EvaluationStep(model, config.resolved_precision, config.tta, use_graph)
    try:
        for epoch in range(start + 1, config.epochs + 1):
            if stop_after is not None and epoch > start + stop_after:
                break
            # every epoch's randomness comes from (seed, epoch, rank), so a resumed run repeats it exactly
            manual_seed((config.seed * 1000 + epoch) * ranks + rank)
            train_loader.set_epoch(epoch)
            with tqdm(total=len(train_loader), desc=f"Epoch {epoch}", disable=not show_progress or rank,
                      leave=False) as bar:
                tr = train_one_epoch(net, train_loader, optimizer, scheduler, per_batch, progress=bar,
                                     lookahead=lookahead, step=step)
            if lookahead is not None and epoch == config.epochs:
                lookahead.finish()  # the run ends on the slow weights
            if not rank:
                with tqdm(total=len(test_loader), desc="  eval", disable=not show_progress, leave=False) as bar:
                    te = evaluate(model, test_loader, progress=bar, step=evaluation)
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None and not per_batch:
                scheduler.step()
            elapsed += tr["time"]
            if not rank:
                _print_milestones(recipe_of(config).milestones, rows, te, elapsed, epoch)
                best = _record_epoch(config, out, model, optimizer, scaler, lookahead, rows, epoch, tr, te, lr,
                                     elapsed, best)
            done = epoch
    except FloatingPointError as e:
        raise FloatingPointError(f"training stopped in epoch {epoch}: {e} (--lr {config.lr}: try a lower one). "
                                 f"{_saved(out, done)}") from None
    except MemoryError as e:
        raise MemoryError(f"out of memory in epoch {epoch} with --batch-size {config.batch_size} ({e}); "
                          f"lower --batch-size. {_saved(out, done)}") from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted in epoch {epoch}. {_saved(out, done)}") from None
    return rows


def _print_milestones(milestones, rows, te, elapsed, epoch):
    """A line naming the `milestones` the test accuracy reaches for the first time: the time to them is
    the training so far and the evaluation that measured it."""
    before = max((r["test_acc"] for r in rows), default=0.0)
    reached = [f"{100 * m:g}%" for m in milestones if before < m <= te["acc"]]
    if reached:
        print(f"Reached {', '.join(reached)} test accuracy in {elapsed + te['time']:.2f} s (epoch {epoch}: "
              f"{elapsed:.2f} s of training, {te['time']:.2f} s evaluating)", flush=True)


def _record_epoch(config, out, model, optimizer, scaler, lookahead, rows, epoch, tr, te, lr, elapsed, best):
    """The epoch's line, metrics row, checkpoints (last, and best when it is) and curves; returns
    the best test accuracy so far."""
    row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "test_loss": te["loss"],
           "test_acc": te["acc"], "epoch_time": tr["time"], "lr": lr, "train_acc5": tr["acc5"],
           "test_acc5": te["acc5"], "elapsed": elapsed, "test_time": te["time"]}
    rows.append(row)
    print(f"Epoch {epoch}: train_loss={tr['loss']:.4f} train_acc={tr['acc']:.4f} train_acc5={tr['acc5']:.4f} "
          f"test_loss={te['loss']:.4f} test_acc={te['acc']:.4f} test_acc5={te['acc5']:.4f} "
          f"epoch_time={tr['time']:.1f}s", flush=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None else None, "epoch": epoch,
             "lookahead": lookahead.state_dict() if lookahead is not None else None,
             "best_acc": max(best, te["acc"]), "metrics": rows, "config": dataclasses.asdict(config)}
    if te["acc"] > best:
        best = te["acc"]
        save_checkpoint(state, out / "best.ckpt")
    save_checkpoint(state, out / "last.ckpt")
    _write_metrics(rows, out / "metrics.csv")
    plot_curves(rows, out / "curves.png")
    return best


def _saved(out, done):
    if not done:
        return f"No epoch had finished, so {out} holds no checkpoint yet."
    return f"{out} holds the run up to epoch {done}: continue it with `mytensor train --out {out} --resume`."


def load_run(run_dir, which="best", device=None, data_dir=None):
    """(config, model, dataset, test loader) of a run, for `eval` and `predict`;
    `device` and `data_dir` replace the saved ones (a run folder moves between machines)."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir / "config.json")
    config = dataclasses.replace(config, **{k: v for k, v in (("device", device), ("data_dir", data_dir)) if v})
    config = dataclasses.replace(config, resolved_device=resolve_device(config.device))
    dataset, loader = build_data(config, train=False, workers=cpu_threads(config.threads, config.workers)[1])
    model = build_model(config, dataset)
    model.load_state_dict(load_checkpoint(run_dir / f"{which}.ckpt")["model"])
    return config, model, dataset, loader
