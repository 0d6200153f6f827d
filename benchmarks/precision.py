"""Training steps in each numeric precision: ResNet-9 (the DAWNBench network) at batch 512,
SGD with Nesterov momentum, on random CIFAR-sized images resident on the GPU.

Both frameworks replay the whole step from a CUDA graph, each in its best ordinary
mode for the precision: fp32 is strict FP32 for both (PyTorch's TF32 switches off,
cuDNN's too); tf32 lets float32 matrix products and convolutions use TF32 tensor
cores; bf16 is autocast to bfloat16 with channels-last tensors on both sides (cuDNN's fastest
layout, and the one mytensor's implicit-GEMM convolutions read, as `mytensor train` lays out a
16-bit GPU model). Both pick their convolution kernels by timing them (`backends.cudnn.benchmark`).
"""
import traceback

from .common import short_error
from .e2e import POOL, time_steps, torch_graph_step

MODEL, BATCH, LR = "resnet9", 512, 0.1
PRECISIONS = ("fp32", "tf32", "bf16")
POLICY = {"full": (3, 10, 100, 3.0), "quick": (1, 1, 2, 0.0)}


def _torch_step(fw, precision):
    import torch
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    model = fw.model(MODEL, num_classes=10, in_channels=3, image_size=32)
    fmt = torch.channels_last if precision == "bf16" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
    batches = [(fw.randn(BATCH, 3, 32, 32).contiguous(memory_format=fmt), fw.randint(10, (BATCH,)))
               for _ in range(POOL)]
    region = (lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)) if precision == "bf16" \
        else None
    return torch_graph_step(fw, model, opt, *batches[0], region=region), batches


def _mytensor_step(fw, precision):
    import mytensor
    import mytensor.optim as optim
    from mytensor.training.loop import train_step
    fmt = mytensor.channels_last if precision == "bf16" else mytensor.contiguous_format
    model = fw.model(MODEL, num_classes=10, in_channels=3, image_size=32).to(memory_format=fmt)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
    graphed = mytensor.cuda.graphed(train_step(model, opt, precision=precision))
    batches = [(fw.randn(BATCH, 3, 32, 32).contiguous(memory_format=fmt), fw.randint(10, (BATCH,)))
               for _ in range(POOL)]
    return (lambda x, y: graphed(x, y)), batches


def run(device, frameworks, quick=False, log=print, precisions=PRECISIONS):
    if not device.startswith("cuda"):
        return {"skipped": "precisions are compared on the GPU only"}
    from mytensor.backends import cudnn
    from mytensor.training.precision import matmul_precision_of
    warmup, min_steps, max_steps, budget = POLICY["quick" if quick else "full"]
    rows = []
    if "torch" in frameworks:
        import torch
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
    for precision in precisions:
        row = {"model": MODEL, "batch": BATCH, "optimizer": "sgd nesterov", "precision": precision}
        for name, fw in frameworks.items():
            try:
                with matmul_precision_of(precision), cudnn.flags(enabled=True, benchmark=True):
                    step, batches = (_mytensor_step if name == "mytensor" else _torch_step)(fw, precision)
                    row[name] = time_steps(fw, step, batches, warmup, min_steps, max_steps, budget)
                log(f"  precision: {MODEL} {precision:<5} {name:<9} {row[name]['s_per_step'] * 1e3:8.2f} ms/step")
            except Exception as e:
                row[name] = {"error": short_error(e)}
                log(f"  precision: {MODEL} {precision} {name} failed: {short_error(e)}")
                traceback.print_exc()
        rows.append(row)
    if "torch" in frameworks:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved
    return {"data": f"random images resident on the device, a pool of {POOL} batches cycled; both steps replayed "
                    "from CUDA graphs", "rows": rows}
