"""The `mytensor` command: `train`, `eval` and `predict` (also `python -m mytensor`)."""
import argparse
import os
import sys
import time


def _train_parser(sub):
    p = sub.add_parser("train", help="train a model on a dataset")
    p.add_argument("--dataset", default="mnist",
                   help="mnist, fashion-mnist, cifar10, tiny-imagenet or folder:PATH (default: mnist)")
    p.add_argument("--model", default="lenet5", help="mlp, lenet5, simple_conv, cifar_lenet, cifar_cnn3, resnet_small")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    p.add_argument("--lr", type=float, default=None, help="default: 0.05 for sgd, 0.001 for adam/adamw")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", default="onecycle", choices=["none", "step", "multistep", "cosine", "onecycle"])
    p.add_argument("--warmup", type=int, default=0, help="epochs of linear learning-rate warm-up")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--augment", action="store_true", help="random crops (and flips for natural images)")
    p.add_argument("--workers", type=int, default=None,
                   help="threads preparing batches ahead of the training step (default: up to 4, one per core)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (the GPU if there is one)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "tf32", "bf16", "fp16"],
                   help="auto: bf16 mixed precision on GPUs with bfloat16 tensor cores, else fp32 "
                        "(tf32: float32 with TF32 matrix products)")
    p.add_argument("--no-cuda-graph", action="store_true",
                   help="on the GPU, run every step eagerly instead of replaying a captured CUDA graph")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="where datasets live (else $MYTENSOR_DATA, else a cache)")
    p.add_argument("--out", default=None, help="run folder (default: runs/DATASET-MODEL-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def _cmd_train(args):
    from .training.run import train
    if args.resume and not args.out:
        sys.exit("--resume needs --out RUN_DIR, the folder of the run to continue")
    if args.resume and not os.path.exists(os.path.join(args.out, "last.ckpt")):
        sys.exit(f"--resume: no checkpoint {os.path.join(args.out, 'last.ckpt')} to continue from")
    dataset_tag = args.dataset.replace("folder:", "folder-").replace(os.sep, "_")
    config = {
        "dataset": args.dataset, "model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
        "optimizer": args.optimizer, "lr": args.lr if args.lr is not None else (
            0.05 if args.optimizer == "sgd" else 0.001),
        "momentum": args.momentum, "nesterov": args.nesterov, "weight_decay": args.weight_decay,
        "schedule": args.schedule, "warmup": args.warmup, "label_smoothing": args.label_smoothing,
        "augment": args.augment, "workers": args.workers, "device": args.device, "cuda_graph": not args.no_cuda_graph,
        "precision": args.precision,
        "seed": args.seed, "data_dir": args.data_dir,
        "out": args.out or os.path.join("runs", f"{dataset_tag}-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"),
    }
    train(config, resume=args.resume, show_progress=not args.no_progress)
    print(f"Run folder: {config['out']}")


def _cmd_eval(args):
    from .training.loop import evaluate
    from .training.run import load_run
    config, model, _, loader = load_run(args.run_dir, args.checkpoint, args.device)
    result = evaluate(model, loader)
    print(f"{config['model']} on {config['dataset']} ({args.checkpoint} checkpoint): "
          f"test_loss={result['loss']:.4f} test_acc={result['acc']:.4f}")


def _cmd_predict(args):
    import numpy as np

    from . import no_grad
    from .data import read_image
    from .nn import functional as F
    from .training.run import load_run
    config, model, dataset, loader = load_run(args.run_dir, args.checkpoint, args.device)
    image = read_image(args.image, dataset.image_shape)
    batch = loader.prepare(image[None])
    model.eval()
    with no_grad():
        probs = F.softmax(model(batch), dim=1).numpy()[0]
    for i in np.argsort(probs)[::-1][:args.top]:
        print(f"{dataset.classes[i]:>16s}  {100 * probs[i]:5.1f}%")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mytensor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    p = sub.add_parser("eval", help="re-evaluate a run's checkpoint on its test set")
    p.add_argument("run_dir")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--device", default=None)
    p = sub.add_parser("predict", help="print the top classes of an image")
    p.add_argument("run_dir")
    p.add_argument("image")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--device", default=None)
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    args = parser.parse_args(argv)
    try:
        {"train": _cmd_train, "eval": _cmd_eval, "predict": _cmd_predict}[args.command](args)
    except (ValueError, TypeError, RuntimeError, OSError) as e:
        if args.traceback:
            raise
        parser.exit(2, f"mytensor {args.command}: error: {e}\n(run with --traceback for the details)\n")


if __name__ == "__main__":
    main()
