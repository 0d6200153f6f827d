"""The `mytensor` command: `train`, `eval` and `predict` (also `python -m mytensor`)."""
import argparse
import pickle
import sys
from pathlib import Path


def _train_parser(sub, common):
    from .data import DATASETS
    from .models import available_models
    from .training.loop import TTA
    from .training.recipes import RECIPES
    from .training.run import OPTIMIZERS, SCHEDULES, RunConfig as D
    p = sub.add_parser("train", parents=[common], help="train a model on a dataset",
                       description="Every option left out takes its default for a new run, and its saved value "
                                   "with --resume.")
    # default=None everywhere: an option left out is not given, so --resume keeps the saved value
    p.add_argument("--dataset", help=f"{', '.join(DATASETS)} or folder:PATH (default: {D.dataset})")
    p.add_argument("--model", help=f"{', '.join(available_models())} (default: {D.model})")
    p.add_argument("--recipe", choices=list(RECIPES),
                   help="a named way to train: its settings are the defaults of the options left out, and it adds "
                        "what no option says (parameter groups or its own optimizer, its schedule or OneCycle's rise, "
                        "slow weights; docs/time-to-accuracy.md)")
    p.add_argument("--epochs", type=int, help=f"default: {D.epochs}; with --resume, a larger value extends the run")
    p.add_argument("--batch-size", type=int, help=f"per GPU with --gpus (default: {D.batch_size})")
    p.add_argument("--gpus", type=int, help="train on N GPUs of this machine, one process each, the gradients "
                                            "averaged (a step takes N x --batch-size images; --lr is not scaled); "
                                            f"default: {D.gpus}, with --resume the run's own")
    p.add_argument("--drop-last", action="store_true", default=None,
                   help="leave out the last training batch of an epoch when it is smaller")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"default: {D.optimizer}")
    p.add_argument("--lr", type=float, help="default: 0.05 for sgd, 0.001 for adam/adamw")
    p.add_argument("--momentum", type=float,
                   help=f"sgd only (default: {D.momentum}); onecycle cycles it over this -/+ 0.05")
    p.add_argument("--nesterov", action="store_true", default=None, help="sgd only")
    p.add_argument("--weight-decay", type=float, help=f"default: {D.weight_decay}")
    p.add_argument("--schedule", choices=SCHEDULES, help=f"default: {D.schedule}")
    p.add_argument("--warmup", type=int, help="epochs of linear learning-rate warm-up (onecycle: of its rise; "
                                              "default: none, onecycle: the recipe's share of the run, else 30%%)")
    p.add_argument("--label-smoothing", type=float, help=f"default: {D.label_smoothing}")
    p.add_argument("--tta", choices=TTA, help="test-time augmentation: average the logits of the image and its mirror "
                                              "(flip), and of both shifted by a pixel (translate); default: none")
    p.add_argument("--augment", action="store_true", default=None,
                   help="the augmentation the dataset declares: random crops with padding, and flips where a "
                        "mirrored image keeps its class")
    p.add_argument("--data-on-device", action="store_true", default=None,
                   help="hold the whole dataset on the device and augment each batch there in one kernel, instead of "
                        "in loader threads")
    p.add_argument("--image-size", type=int, help="folder: datasets: scale each image to cover N x N and crop the "
                                                  "centre (default: the first image's shorter side)")
    p.add_argument("--skip-bad-images", action="store_true", default=None,
                   help="folder: datasets: leave out (and list) files that cannot be decoded")
    p.add_argument("--workers", type=int,
                   help="threads preparing batches ahead of the training step (default: half of --threads, up to 4)")
    p.add_argument("--threads", type=int, help="CPU threads in all, loader and BLAS (default: the cores this "
                                               "process may use)")
    p.add_argument("--device", help=f"cpu, cuda or auto, the GPU if there is one (default: {D.device})")
    p.add_argument("--precision", choices=("auto", "fp32", "tf32", "bf16", "fp16"),
                   help="auto (the default): bf16 mixed precision on GPUs with bfloat16 tensor cores, else fp32; "
                        "tf32: float32 with TF32 matrix products")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false", default=None,
                   help="on the GPU, run every step eagerly instead of replaying a captured CUDA graph")
    p.add_argument("--seed", type=int, help=f"default: {D.seed}")
    p.add_argument("--data-dir", help="where datasets live (else $MYTENSOR_DATA, else a cache)")
    p.add_argument("--out", help="run folder (default: a new runs/DATASET-MODEL-TIME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out: its saved settings, from its last finished epoch")
    p.add_argument("--runs", type=int, default=1,
                   help="train N runs, with the seeds --seed, --seed + 1, ... (into OUT/run-1, ...), and print the "
                        "mean and standard deviation of their final test accuracy")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out, if there is one")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def _gpus(args):
    """The processes a `train` runs in: --gpus, or with --resume the run's own number."""
    if args.gpus is not None or not (args.resume and args.out):
        return args.gpus or 1
    from .training.run import RunConfig
    return RunConfig.load(Path(args.out).expanduser() / "config.json").gpus


def _cmd_train(args, argv):
    from .distributed import launched
    from .distributed.run import free_port, launch, parse
    if not launched() and _gpus(args) > 1:  # this command again, once per GPU
        raise SystemExit(launch(parse(["--nproc-per-node", str(_gpus(args)), "--master-port", str(free_port()),
                                       "-m", "mytensor", *argv])))
    from .training.run import RunConfig, train, train_runs
    given = {k: getattr(args, k) for k in RunConfig.field_names() if getattr(args, k, None) is not None}
    if args.runs != 1:
        if args.runs < 1 or args.resume:
            raise ValueError(f"--runs {args.runs}: give 1 or more new runs (--resume continues one run)")
        train_runs(given, args.runs, overwrite=args.overwrite, show_progress=not args.no_progress)
        return
    train(given, resume=args.resume, overwrite=args.overwrite, show_progress=not args.no_progress)


def _cmd_eval(args):
    from .training.loop import evaluate
    from .training.run import load_run
    config, model, _, loader = load_run(args.run_dir, args.checkpoint, args.device, args.data_dir)
    result = evaluate(model, loader, tta=config.tta)
    print(f"{config.model} on {config.dataset} ({args.checkpoint} checkpoint): "
          f"test_loss={result['loss']:.4f} test_acc={result['acc']:.4f} test_acc5={result['acc5']:.4f}")


def _cmd_predict(args):
    import numpy as np

    from . import no_grad
    from .data import read_image
    from .nn import functional as F
    from .training.run import load_run
    config, model, dataset, loader = load_run(args.run_dir, args.checkpoint, args.device, args.data_dir)
    image = read_image(args.image, dataset.image_shape)
    batch = loader.prepare(image[None])
    model.eval()
    with no_grad():
        probs = F.softmax(model(batch), dim=1).numpy()[0]
    for i in np.argsort(probs)[::-1][:args.top]:
        print(f"{dataset.classes[i]:>16s}  {100 * probs[i]:5.1f}%")


def _run_parser(sub, name, common, help):
    """eval and predict: a run folder, which checkpoint, and where to run it now."""
    p = sub.add_parser(name, parents=[common], help=help)
    p.add_argument("run_dir")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--device", help="cpu, cuda or auto (default: the run's own --device)")
    p.add_argument("--data-dir", help="where the run's dataset is on this machine (default: the run's own)")
    return p


def main(argv=None):
    # --traceback is accepted before and after the command; SUPPRESS keeps the command's
    # parser from resetting a value given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    parser = argparse.ArgumentParser(prog="mytensor", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub, common)
    _run_parser(sub, "eval", common, "re-evaluate a run's checkpoint on its test set")
    p = _run_parser(sub, "predict", common, "print the top classes of an image")
    p.add_argument("image")
    p.add_argument("--top", type=int, default=5)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            _cmd_train(args, argv)
        else:
            {"eval": _cmd_eval, "predict": _cmd_predict}[args.command](args)
    except (ValueError, TypeError, RuntimeError, OSError, ArithmeticError, MemoryError,
            pickle.UnpicklingError) as e:
        if getattr(args, "traceback", False):
            raise
        parser.exit(2, f"mytensor {args.command}: error: {e}\n(run with --traceback for the details)\n")
    except KeyboardInterrupt as e:
        parser.exit(130, f"\nmytensor {args.command}: {str(e) or 'interrupted'}\n")


if __name__ == "__main__":
    main()
