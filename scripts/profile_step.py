"""Where a training step's GPU time goes: the kernels of a few eager mytensor steps,
summed by name (torch.profiler's CUPTI tracing sees CuPy's and our kernels too). The model is
laid out as `mytensor train` lays it out (channels-last in 16-bit precisions) and the
convolutions pick their kernels by timing, as there.

    python scripts/profile_step.py --model resnet9 --batch 512 --precision bf16
    python scripts/profile_step.py --model resnet18 --batch 256 --image-size 64 --classes 200
    python scripts/profile_step.py --recipe airbench94_muon --batch 2000   # the recipe's model and optimizer
"""
import argparse
import collections

import mytensor as mt
import mytensor.optim as optim
from mytensor.models import get_model
from mytensor.training.loop import train_step
from mytensor.training.precision import matmul_precision_of
from mytensor.training.run import RunConfig, build_optimizer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet9")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--precision", default="bf16")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--recipe", help="take the model and the optimizer (with its groups) from this recipe")
    args = p.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile
    config = RunConfig.from_options({"recipe": args.recipe, "device": "cuda"}) if args.recipe else None
    name = config.model if config else args.model
    model = get_model(name, num_classes=args.classes, in_channels=3, image_size=args.image_size).to("cuda")
    if config:
        opt = build_optimizer(config, model)
    else:
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    step = train_step(model, opt, precision=args.precision)
    size = args.image_size
    x, y = mt.randn(args.batch, 3, size, size, device="cuda"), mt.randint(0, args.classes, (args.batch,), device="cuda")
    if args.precision in ("bf16", "fp16"):
        model.to(memory_format=mt.channels_last)
        x = x.to(memory_format=mt.channels_last)
    with matmul_precision_of(args.precision), mt.backends.cudnn.flags(enabled=True, benchmark=True):
        for _ in range(3):
            step(x, y)
        mt.backend.get_backend("cuda").synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(args.steps):
                step(x, y)
            mt.backend.get_backend("cuda").synchronize()
    totals, counts = collections.Counter(), collections.Counter()
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            totals[e.name] += e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
            counts[e.name] += 1
    whole = sum(totals.values())
    print(f"{name} batch {args.batch} {args.precision}: {whole / args.steps / 1e3:.2f} ms of kernels per step, "
          f"{sum(counts.values()) / args.steps:.0f} kernels per step")
    for name, us in totals.most_common(args.top):
        print(f"{us / args.steps / 1e3:8.3f} ms {100 * us / whole:5.1f}%  x{counts[name] // args.steps:<4d} {name[:110]}")


if __name__ == "__main__":
    main()
