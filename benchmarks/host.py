"""Host time of single small ops, mytensor against PyTorch: what the framework around a kernel costs.

The arithmetic of a 64x64 add takes a microsecond; the rest of the call is the framework's:
argument checks, type promotion, the autograd record, the dispatch to a backend and, on a GPU,
the launch. Each row times a block of calls, the two frameworks alternating block by block (a
busy machine then slows both alike), and keeps the median time per call over the blocks.

On the CPU that is the op's whole time, measured with one thread for NumPy's BLAS and for
PyTorch: the host's cost, without a thread pool waking up between small products. On a GPU it
is the time the host takes to queue the call (the device runs behind; it is synchronised
after each block, outside the timing).
"""
import statistics
import time

from threadpoolctl import threadpool_limits

ROWS = ("add 64x64", "add 64x64, recorded", "mul 64x64 by a number", "relu 64x64", "linear 64x128->64",
        "linear 64x128->64, recorded", "MLP step 128-64-10, SGD")
REPS = {"full": (41, 200), "quick": (5, 20)}  # (blocks, calls per block); the MLP step takes a tenth


def build(fw, name):
    """A no-argument callable doing one `name`."""
    lib, F = fw.lib, fw.F
    a, b = fw.randn(64, 64), fw.randn(64, 64)
    x, w, bias = fw.randn(64, 128), fw.randn(64, 128), fw.randn(64)
    if name == "add 64x64":
        return lambda: a + b
    if name == "add 64x64, recorded":
        leaf = fw.randn(64, 64, requires_grad=True)
        return lambda: leaf + b
    if name == "mul 64x64 by a number":
        return lambda: a * 2.0
    if name == "relu 64x64":
        return lambda: F.relu(a)
    if name.startswith("linear"):
        if name.endswith("recorded"):
            w.requires_grad_(), bias.requires_grad_()
        return lambda: F.linear(x, w, bias)
    if name.startswith("MLP step"):
        model = lib.nn.Sequential(lib.nn.Linear(128, 64), lib.nn.ReLU(), lib.nn.Linear(64, 10)).to(fw.device)
        opt = fw.optimizer("sgd", model.parameters(), lr=0.01)
        y = fw.randint(10, (64,))

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return step
    raise ValueError(name)


def _block(fw, fn, calls):
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - t0
    fw.sync()
    return elapsed / calls


def run(device, frameworks, quick=False, log=print):
    """Rows of {name, mytensor: {median_s, ...}, torch: {...}, ratio}."""
    blocks, calls = REPS["quick" if quick else "full"]
    rows = []
    torch_fw = frameworks.get("torch")
    threads = torch_fw.lib.get_num_threads() if torch_fw is not None else None
    try:
        if torch_fw is not None and not torch_fw.is_cuda:
            torch_fw.lib.set_num_threads(1)
        with threadpool_limits(1, user_api="blas"):
            for name in ROWS:
                n = max(1, calls // 10) if name.startswith("MLP") else calls
                fns = {fw_name: build(fw, name) for fw_name, fw in frameworks.items()}
                for fw_name, fw in frameworks.items():  # warm-up: kernels compiled, caches filled
                    _block(fw, fns[fw_name], n)
                times = {fw_name: [] for fw_name in frameworks}
                for _ in range(blocks):
                    for fw_name, fw in frameworks.items():
                        times[fw_name].append(_block(fw, fns[fw_name], n))
                row = {"name": name, "calls_per_block": n, "blocks": blocks}
                for fw_name, ts in times.items():
                    row[fw_name] = {"median_s": statistics.median(ts), "min_s": min(ts), "times_s": ts}
                row["ratio"] = (row["mytensor"]["median_s"] / row["torch"]["median_s"]) if "torch" in row else None
                rows.append(row)
                log(f"  host: {name}: mytensor {row['mytensor']['median_s'] * 1e6:.1f} us"
                    + (f", PyTorch {row['torch']['median_s'] * 1e6:.1f} us, ratio {row['ratio']:.2f}"
                       if row["ratio"] else ""))
    finally:
        if threads is not None:
            torch_fw.lib.set_num_threads(threads)
    return {"reps_policy": {"blocks": blocks, "calls_per_block": calls}, "rows": rows}
