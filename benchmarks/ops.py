"""Forward + backward of single ops, mytensor against PyTorch on the same device.

Each op is swept along three axes, one at a time around a base point: batch
size, input size (H = W) and channels (Cin -> Cout). What the axes mean per op:

    conv2d       x (N, Cin, S, S), 3x3 kernel, padding 1, Cout filters, with bias
    max_pool2d   x (N, Cout, S, S), 2x2 window, stride 2
    linear       x (N, Cin*(S/4)^2) -> Cout: a classifier head on a flattened feature map
    softmax_ce   logits (N, Cout) against random class targets (no spatial axis)
    batch_norm   x (N, Cout, S, S), training mode, affine, running statistics updated

One repetition is: clear the leaf gradients, run the op, backpropagate a fixed
random output gradient (the loss itself for softmax_ce).

On a GPU a fourth axis, `bf16`, repeats the base point at larger batches with the
activations and weights in bfloat16 and channels-last, as a mixed-precision network runs
them (batch norm with float32 parameters; softmax_ce stays float32, as autocast keeps it).
"""
import traceback

from .common import hurry, measure, measure_alternating, settle, short_error

OPS = ("conv2d", "max_pool2d", "linear", "softmax_ce", "batch_norm")

SWEEPS = {
    "cpu": {"base": (16, 16, 16, 32),  # (batch, size, cin, cout)
            "batch": [1, 4, 16, 64, 256], "size": [8, 16, 32, 64],
            "channels": [(3, 8), (16, 32), (64, 64), (128, 128), (256, 256)]},
    "cuda": {"base": (64, 32, 64, 64),
             "batch": [1, 4, 16, 64, 256], "size": [8, 16, 32, 64],
             "channels": [(3, 8), (16, 32), (64, 64), (128, 128), (256, 256)], "bf16": [64, 256, 512]},
    "quick": {"base": (4, 8, 3, 8),
              "batch": [1, 4], "size": [8, 16], "channels": [(3, 8), (8, 16)]},
}

# Repetition policy per sweep: (warm-up calls, min reps, max reps, seconds per measurement).
REPS = {"cpu": (1, 5, 30, 1.0), "cuda": (3, 5, 50, 0.25), "quick": (1, 2, 3, 0.05)}


def build(fw, op, n, size, cin, cout, low=False):
    """(leaf tensors, forward closure) of one op configuration (`low`: bf16, channels-last)."""
    F = fw.F

    def randn(*shape):
        return fw.randn(*shape, requires_grad=True, low=low)
    if op == "conv2d":
        x, w, b = randn(n, cin, size, size), randn(cout, cin, 3, 3), randn(cout)
        return [x, w, b], lambda: F.conv2d(x, w, b, padding=1)
    if op == "max_pool2d":
        x = randn(n, cout, size, size)
        return [x], lambda: F.max_pool2d(x, 2)
    if op == "linear":
        features = cin * max(1, size // 4) ** 2
        x, w, b = randn(n, features), randn(cout, features), randn(cout)
        return [x, w, b], lambda: F.linear(x, w, b)
    if op == "softmax_ce":
        logits, target = fw.randn(n, cout, requires_grad=True), fw.randint(cout, (n,))
        return [logits], lambda: F.cross_entropy(logits, target)
    if op == "batch_norm":
        x = randn(n, cout, size, size)
        w, b = fw.ones(cout).requires_grad_(), fw.zeros(cout).requires_grad_()
        rm, rv = fw.zeros(cout), fw.ones(cout)
        return [x, w, b], lambda: F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
    raise ValueError(op)


def make_step(fw, op, config):
    leaves, forward = build(fw, op, *config)
    out = forward()
    grad = None if out.ndim == 0 else fw.randn(*out.shape)

    def step():
        for t in leaves:
            t.grad = None
        y = forward()
        if grad is None:
            y.backward()
        else:
            y.backward(grad)
    return step


def configs(sweep):
    """[(axis, value label, (n, size, cin, cout))] for every point of the three sweeps."""
    n0, s0, ci0, co0 = sweep["base"]
    points = [("batch", n, (n, s0, ci0, co0, False)) for n in sweep["batch"]]
    points += [("size", s, (n0, s, ci0, co0, False)) for s in sweep["size"]]
    points += [("channels", f"{ci}->{co}", (n0, s0, ci, co, False)) for ci, co in sweep["channels"]]
    points += [("bf16", n, (n, s0, ci0, co0, True)) for n in sweep.get("bf16", [])]
    return points


def applies(op, axis):
    return not (op == "softmax_ce" and axis in ("size", "bf16"))


def run(device, frameworks, quick=False, log=print, alternate=False):
    """Rows of {op, axis, value, n, size, cin, cout, mytensor: {...}, torch: {...}, ratio}.

    For each op, one framework runs its whole sweep, then the other: their
    thread pools (OpenBLAS for NumPy, OpenMP for PyTorch) spin for a while after
    each call, and alternating at every point would let one slow the other. With
    `alternate` (the CPU with one thread each: no pool to spin) the two take turns
    repetition by repetition at every point, so load on a shared machine hits both."""
    key = "quick" if quick else ("cuda" if device.startswith("cuda") else "cpu")
    sweep, (warmup, min_reps, max_reps, budget) = SWEEPS[key], REPS[key]
    rows = []
    for op in OPS:
        points = [(axis, value, cfg) for axis, value, cfg in configs(sweep) if applies(op, axis)]
        unique = list(dict.fromkeys(cfg for _, _, cfg in points))
        results = {cfg: {} for cfg in unique}
        if alternate and not device.startswith("cuda"):
            for cfg in unique:
                if hurry(device) and (warmup, min_reps, max_reps, budget) != REPS["quick"]:
                    log("  ops: running out of time: minimum repetitions from here on")
                    warmup, min_reps, max_reps, budget = REPS["quick"]
                try:
                    fws = list(frameworks.values())
                    timed = measure_alternating(fws, [make_step(fw, op, cfg) for fw in fws], warmup, min_reps,
                                                max_reps, budget * len(fws))
                    results[cfg] = dict(zip(frameworks, timed))
                except Exception as e:  # one failing configuration must not end the suite
                    results[cfg] = {name: {"error": short_error(e)} for name in frameworks}
                    log(f"  ops: {op} {cfg} failed: {short_error(e)}")
                    if not quick:
                        traceback.print_exc()
        for name, fw in (() if alternate and not device.startswith("cuda") else frameworks.items()):
            settle(fw)
            for cfg in unique:
                if hurry(device) and (warmup, min_reps, max_reps, budget) != REPS["quick"]:
                    log("  ops: running out of time: minimum repetitions from here on")
                    warmup, min_reps, max_reps, budget = REPS["quick"]
                try:
                    results[cfg][name] = measure(fw, make_step(fw, op, cfg), warmup, min_reps, max_reps, budget)
                except Exception as e:  # one failing configuration must not end the suite
                    results[cfg][name] = {"error": short_error(e)}
                    log(f"  ops: {name} {op} {cfg} failed: {short_error(e)}")
                    if not quick:
                        traceback.print_exc()
        for axis, value, cfg in points:
            n, size, cin, cout, low = cfg
            rows.append({"op": op, "axis": axis, "value": value, "n": n, "size": size, "cin": cin, "cout": cout,
                         "precision": "bf16 channels-last" if low else "fp32", **results[cfg],
                         "ratio": ratio(results[cfg])})
        log(f"  ops: {op}: {len(unique)} configurations, ratios mytensor/torch " +
            " ".join("-" if ratio(results[c]) is None else f"{ratio(results[c]):.2g}" for c in unique))
    return {"sweep": dict(sweep), "reps_policy": dict(zip(("warmup", "min_reps", "max_reps", "budget_s"), REPS[key])),
            "hurried": (warmup, min_reps, max_reps, budget) != REPS[key], "rows": rows}


def ratio(result):
    a, b = result.get("mytensor", {}), result.get("torch", {})
    if "median_s" in a and "median_s" in b and b["median_s"] > 0:
        return a["median_s"] / b["median_s"]
    return None
