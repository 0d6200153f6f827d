"""End to end: seconds per training epoch of the report models.

The data are random images already resident on the device (a pool of a few
batches, cycled), so the framework is measured, not the disk or the loader.
We time a fixed number of steps after warm-up -- as many as fit a time budget,
between a floor and a ceiling -- synchronise, and extrapolate to an epoch:
seconds/epoch = seconds/step x ceil(images / batch). One step is
`loss = cross_entropy(model(x), y); zero_grad(); backward(); step()`, the
training loop of `mytensor.training`.

On the GPU, "mytensor" is the step `mytensor train` runs: replayed from a
CUDA graph (eager on the CPU, or with dropout); "mytensor_eager"
is always eager. We also time the step without the final synchronisation (host
time: how long Python takes to issue a step; when it is close to the synced
time the step is bound by Python, not by the GPU), run PyTorch a third way with
the whole step captured in one CUDA graph, and count the GPU kernels one step
launches (through torch.profiler, whose CUPTI tracing also sees CuPy's kernels).
"""
import math
import statistics
import time
import traceback

from .common import hurry, settle, short_error

DATASETS = {  # images in an epoch, channels, side, classes
    "mnist": (60000, 1, 28, 10),
    "cifar10": (50000, 3, 32, 10),
}

# The training recipes of the reports: batch 64 with SGD + momentum for most,
# batch 32 for the deepest network, Adam for the He-initialised CNN.
CONFIGS = [
    {"model": "mlp", "dataset": "mnist", "batch": 64, "optimizer": "sgd", "lr": 0.05},
    {"model": "lenet5", "dataset": "mnist", "batch": 64, "optimizer": "sgd", "lr": 0.05},
    {"model": "cifar_lenet", "dataset": "cifar10", "batch": 64, "optimizer": "sgd", "lr": 0.05},
    {"model": "cifar_cnn3", "dataset": "cifar10", "batch": 64, "optimizer": "adam", "lr": 1e-3},
    {"model": "resnet_small", "dataset": "cifar10", "batch": 32, "optimizer": "sgd", "lr": 0.05},
]
QUICK_MODELS = ("mlp", "lenet5")

# (warm-up steps, min timed steps, max timed steps, seconds of timed steps)
POLICY = {"cpu": (1, 3, 30, 8.0), "cuda": (3, 10, 200, 3.0), "quick": (1, 1, 2, 0.0)}
POOL = 4  # distinct batches resident on the device


def setup(fw, cfg, capturable=False, pool=POOL):
    """(model, optimizer, [(x, y)] batches on the device)."""
    _, c, side, classes = DATASETS[cfg["dataset"]]
    model = fw.model(cfg["model"], num_classes=classes, in_channels=c, image_size=side)
    model.train()
    opt = fw.optimizer(cfg["optimizer"], model.parameters(), cfg["lr"], capturable=capturable)
    batches = [(fw.randn(cfg["batch"], c, side, side), fw.randint(classes, (cfg["batch"],))) for _ in range(pool)]
    return model, opt, batches


def eager_step(fw, model, opt):
    F = fw.F

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def torch_graph_step(fw, model, opt, x0, y0, region=None):
    """The whole step (forward, backward, optimizer) captured once in a CUDA graph
    and replayed on static input/target tensors, the recipe of the PyTorch docs.
    `region()`, if given, is the context (autocast) the forward and loss run in."""
    import contextlib

    import torch
    F = fw.F
    region = region or contextlib.nullcontext
    static_x, static_y = x0.clone(), y0.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up on a side stream (lazy state, cuDNN/cuBLAS handles)
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            with region():
                loss = F.cross_entropy(model(static_x), static_y)
            loss.backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        with region():
            static_loss = F.cross_entropy(model(static_x), static_y)
        static_loss.backward()
        opt.step()

    def step(x, y):
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
    step.keepalive = (graph, static_loss)
    return step


def mytensor_trainer_step(fw, model, opt):
    """The step `mytensor train` runs: on the GPU, recorded once as a CUDA graph and
    replayed (`mytensor.cuda.graphed`) where it can be; eager otherwise."""
    import mytensor
    from mytensor.training.loop import train_step
    if not fw.is_cuda:
        return eager_step(fw, model, opt), False
    graphed = mytensor.cuda.graphed(train_step(model, opt), fallback=True)

    def step(x, y):
        graphed(x, y)
    return step, True


def make_step(fw, variant, model, opt, batches):
    """(step function, whether it replays a CUDA graph) of one variant."""
    if variant == "torch_graph":
        return torch_graph_step(fw, model, opt, *batches[0]), True
    if variant == "mytensor" and fw.is_cuda:
        return mytensor_trainer_step(fw, model, opt)
    return eager_step(fw, model, opt), False


def time_steps(fw, step, batches, warmup, min_steps, max_steps, budget_s):
    for i in range(warmup):
        step(*batches[i % len(batches)])
    fw.sync()
    t0 = time.perf_counter()
    step(*batches[0])
    fw.sync()
    estimate = time.perf_counter() - t0
    steps = max(min_steps, min(max_steps, int(budget_s / max(estimate, 1e-6))))
    fw.sync()
    t0 = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    host = time.perf_counter() - t0
    fw.sync()
    total = time.perf_counter() - t0
    return {"s_per_step": total / steps, "host_s_per_step": host / steps, "timed_steps": steps,
            "warmup_steps": warmup + 1, "first_timed_estimate_s": estimate}


ALTERNATING_BLOCKS = 6  # blocks of steps per framework when the frameworks take turns


def time_steps_alternating(steps, batches, warmup, min_steps, max_steps, budget_s):
    """`time_steps` of the CPU step of each framework at once (one thread each): the timed
    steps split into blocks that the frameworks run in turn, s/step the median over the
    blocks, so load on a shared machine slows both alike."""
    estimates = []
    for step, data in zip(steps, batches):
        for i in range(warmup):
            step(*data[i % len(data)])
        t0 = time.perf_counter()
        step(*data[0])
        estimates.append(time.perf_counter() - t0)
    counts = [max(min_steps, min(max_steps, int(budget_s / max(e, 1e-6)))) for e in estimates]
    per_block = [max(1, -(-n // ALTERNATING_BLOCKS)) for n in counts]
    blocks = [[] for _ in steps]
    for _ in range(ALTERNATING_BLOCKS):
        for step, data, k, out in zip(steps, batches, per_block, blocks):
            t0 = time.perf_counter()
            for i in range(k):
                step(*data[i % len(data)])
            out.append((time.perf_counter() - t0) / k)
    return [{"s_per_step": statistics.median(b), "host_s_per_step": statistics.median(b),
             "timed_steps": k * ALTERNATING_BLOCKS, "warmup_steps": warmup + 1, "first_timed_estimate_s": e,
             "alternating_blocks_s_per_step": b} for b, k, e in zip(blocks, per_block, estimates)]


def count_kernels(fw, step, batch):
    """GPU activities of one step seen by torch.profiler (CUPTI): kernels, and
    memcpy/memset separately. None if that is not measurable here."""
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile
        step(*batch)
        fw.sync()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step(*batch)
            fw.sync()
        kernels = memops = 0
        for e in prof.events():
            if e.device_type != torch.autograd.DeviceType.CUDA:
                continue
            if e.name.lower().startswith(("memcpy", "memset")):
                memops += 1
            else:
                kernels += 1
        return {"kernels": kernels, "memcpy_memset": memops} if kernels else None
    except Exception as e:
        return {"error": short_error(e)}


def params_of(model):
    return sum(p.numel() for p in model.parameters())


def run(device, frameworks, quick=False, models=None, log=print, alternate=False):
    """With `alternate` (the CPU with one thread each) the frameworks take turns, block of steps by block."""
    key = "quick" if quick else ("cuda" if device.startswith("cuda") else "cpu")
    warmup, min_steps, max_steps, budget = POLICY[key]
    configs = [c for c in CONFIGS if (models is None or c["model"] in models)
               and (not quick or models is not None or c["model"] in QUICK_MODELS)]
    cuda = device.startswith("cuda")
    variants = [(name, name) for name in frameworks]
    if cuda and "mytensor" in frameworks:  # "mytensor" is the trainer's step: graphed where it can be
        variants.append(("mytensor_eager", "mytensor"))
    if cuda and "torch" in frameworks:
        variants.append(("torch_graph", "torch"))
    rows = []
    for cfg in configs:
        images = DATASETS[cfg["dataset"]][0]
        row = {**cfg, "images_per_epoch": images, "steps_per_epoch": math.ceil(images / cfg["batch"])}
        if alternate and not cuda:
            try:
                built = [setup(frameworks[name], cfg) for name, _ in variants]
                steps = [eager_step(frameworks[name], model, opt) for (name, _), (model, opt, _) in zip(variants, built)]
                timed = time_steps_alternating(steps, [b for _, _, b in built], warmup, min_steps, max_steps, budget)
                for (variant, _), res, (model, _, _) in zip(variants, timed, built):
                    res.update(cuda_graph=False, s_per_epoch=res["s_per_step"] * row["steps_per_epoch"],
                               params=params_of(model))
                    row[variant] = res
                    log(f"  e2e: {cfg['model']:<13} {variant:<12} {res['s_per_step'] * 1e3:9.2f} ms/step "
                        f"({res['timed_steps']} steps, the frameworks alternating) -> {res['s_per_epoch']:.1f} s/epoch")
                del built, steps
            except Exception as e:
                for variant, _ in variants:
                    row[variant] = {"error": short_error(e)}
                log(f"  e2e: {cfg['model']} failed: {short_error(e)}")
                if not quick:
                    traceback.print_exc()
        for variant, fw_name in (() if alternate and not cuda else variants):
            fw = frameworks[fw_name]
            settle(fw)
            if hurry(device) and (warmup, min_steps, max_steps, budget) != POLICY["quick"]:
                log("  e2e: running out of time: minimum steps from here on")
                warmup, min_steps, max_steps, budget = POLICY["quick"]
            try:
                model, opt, batches = setup(fw, cfg, capturable=variant == "torch_graph")
                step, graphed = make_step(fw, variant, model, opt, batches)
                res = time_steps(fw, step, batches, warmup, min_steps, max_steps, budget)
                res["cuda_graph"] = graphed
                res["s_per_epoch"] = res["s_per_step"] * row["steps_per_epoch"]
                res["params"] = params_of(model)
                row[variant] = res
                log(f"  e2e: {cfg['model']:<13} {variant:<12} {res['s_per_step'] * 1e3:9.2f} ms/step "
                    f"(host {res['host_s_per_step'] * 1e3:.2f} ms, {res['timed_steps']} steps) "
                    f"-> {res['s_per_epoch']:.1f} s/epoch")
                del model, opt, batches, step
            except Exception as e:
                row[variant] = {"error": short_error(e)}
                log(f"  e2e: {cfg['model']} {variant} failed: {short_error(e)}")
                if not quick:
                    traceback.print_exc()
        counts = {row[v]["params"] for v, _ in variants if "params" in row[v]}
        if len(counts) > 1:  # the twins must be the same network
            row["params_mismatch"] = True
            log(f"  e2e: WARNING {cfg['model']}: parameter counts differ between frameworks: {sorted(counts)}")
        rows.append(row)
    if cuda and not quick and hurry(device):
        log("  e2e: no time left to count kernels")
    elif cuda and not quick:  # after all timings: a CUPTI session can slow later kernel launches
        for row in rows:
            for variant, fw_name in variants:
                if "error" in row.get(variant, {"error": 1}):
                    continue
                fw = frameworks[fw_name]
                try:
                    model, opt, batches = setup(fw, row, capturable=variant == "torch_graph", pool=1)
                    step, _ = make_step(fw, variant, model, opt, batches)
                    row[variant]["gpu_activities_per_step"] = count_kernels(fw, step, batches[0])
                except Exception as e:
                    row[variant]["gpu_activities_per_step"] = {"error": short_error(e)}
                log(f"  e2e: {row['model']:<13} {variant:<12} GPU activities per step: "
                    f"{row[variant]['gpu_activities_per_step']}")
    return {"policy": dict(zip(("warmup_steps", "min_steps", "max_steps", "budget_s"), POLICY[key])),
            "hurried": (warmup, min_steps, max_steps, budget) != POLICY[key],
            "data": f"random images resident on the device, a pool of {POOL} batches cycled",
            "extrapolation": "s/epoch = measured s/step x ceil(images/batch); not a full epoch",
            "rows": rows}
