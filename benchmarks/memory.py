"""Peak memory of one training step (the e2e recipes), after two warm-up steps.

GPU, in this process: the memory a step takes above what was in use before it
(activations, gradients, temporaries; parameters, optimizer state and the batch
are already resident after the warm-up steps). Measuring above a baseline keeps
the figure independent of what else the process holds (the e2e data, say).
  mytensor  the high-water mark of what the step takes from CuPy's memory pool,
            followed through a `cupy.cuda.MemoryHook` (every pool malloc/free).
  torch     `torch.cuda.max_memory_allocated()` after `reset_peak_memory_stats()`,
            minus `memory_allocated()` before the step.
  Neither counts what the allocators keep cached but unused.

CPU, one fresh child process per (framework, model), so neither framework's
freed memory is reused by the other and what the process did before does not
move the figure:
  both      the peak resident set of the step minus the RSS before the model was
            built (the framework imported and warmed up on tiny layers first),
            so parameters, gradients, optimizer state and the batch count. The
            kernel's peak-RSS mark (VmHWM) is reset through /proc/self/clear_refs
            just before the step and read just after. glibc is told to mmap every
            block above 64 KiB (MALLOC_MMAP_THRESHOLD_), so freed memory goes back
            to the kernel and the figure is the real working set, not what malloc
            kept from earlier steps.
  mytensor  also the tracemalloc peak (NumPy reports its buffers to tracemalloc;
            PyTorch's CPU allocations do not show there), in `tracemalloc_peak_bytes`.
"""
import gc
import json
import os
import subprocess
import sys
import threading
import time
import traceback
import tracemalloc

from .common import Framework, short_error
from .e2e import CONFIGS, QUICK_MODELS, eager_step, setup


def _train_step(fw, cfg):
    model, opt, batches = setup(fw, cfg, pool=1)
    step = eager_step(fw, model, opt)
    x, y = batches[0]
    return lambda: step(x, y)


# ---------------------------------------------------------------- GPU
def _mytensor_gpu_peak(fw, step):
    import cupy
    pool = cupy.get_default_memory_pool()

    class Peak(cupy.cuda.MemoryHook):
        name = "benchmarks_peak"

        def __init__(self):
            self.current = self.peak = 0

        def malloc_postprocess(self, **kw):
            self.current += kw["mem_size"]
            self.peak = max(self.peak, self.current)

        def free_postprocess(self, **kw):
            self.current -= kw["mem_size"]

    fw.sync()
    before = pool.used_bytes()
    with Peak() as hook:
        step()
        fw.sync()
    out = {"peak_bytes": hook.peak, "resident_before_bytes": before, "pool_total_bytes": pool.total_bytes(),
           "method": "MemoryHook high-water of the default pool during the step, above what was in use before"}
    if hook.peak == 0:  # allocations bypass the default pool (another allocator): no honest figure
        out.update(peak_bytes=None, error="the step took nothing from CuPy's default memory pool")
    return out


def _torch_gpu_peak(fw, step):
    import torch
    fw.sync()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    fw.sync()
    return {"peak_bytes": torch.cuda.max_memory_allocated() - before, "resident_before_bytes": before,
            "reserved_bytes": torch.cuda.max_memory_reserved(),
            "method": "torch.cuda.max_memory_allocated during the step, above what was allocated before"}


def gpu_peak(fw, cfg):
    step = _train_step(fw, cfg)
    step()
    step()
    gc.collect()
    return (_mytensor_gpu_peak if fw.name == "mytensor" else _torch_gpu_peak)(fw, step)


# ---------------------------------------------------------------- CPU
def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


class PeakRSS:
    """The peak resident set inside the `with` block (`peak_bytes`): the kernel's
    VmHWM after resetting it, or else a 1 ms sampling thread."""

    def __enter__(self):
        gc.collect()
        self.before_bytes = _rss_kib("VmRSS") * 1024
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method, self._thread = "VmHWM after clear_refs", None
        except OSError:
            self.method, self._stop, self._max = "VmRSS sampled every 1 ms", False, self.before_bytes // 1024
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop:
            self._max = max(self._max, _rss_kib("VmRSS"))
            time.sleep(0.001)

    def __exit__(self, *exc):
        if self._thread is None:
            peak = _rss_kib("VmHWM")
        else:
            self._stop = True
            self._thread.join()
            peak = max(self._max, _rss_kib("VmRSS"))
        self.peak_bytes = peak * 1024


def _warm_up_framework(fw):
    """Tiny versions of every kind of layer and update, so one-off initialisation
    (BLAS buffers, thread pools, lazily imported modules) lands before the baseline."""
    x = fw.randn(2, 3, 8, 8, requires_grad=True)
    w, v = fw.randn(4, 3, 3, 3, requires_grad=True), fw.randn(10, 64, requires_grad=True)
    h = fw.F.max_pool2d(fw.F.relu(fw.F.conv2d(x, w, None, padding=1)), 2)
    h = fw.F.batch_norm(h, None, None, training=True).flatten(1)
    fw.F.cross_entropy(fw.F.linear(h, v), fw.randint(10, (2,))).backward()
    for opt in ("sgd", "adam"):
        fw.optimizer(opt, [w, v], 0.01).step()


def rss_peak(fw, cfg):
    """The peak RSS of the third training step minus the RSS before the model was built."""
    gc.collect()
    baseline = _rss_kib("VmRSS") * 1024
    step = _train_step(fw, cfg)
    step()
    step()
    with PeakRSS() as rss:
        step()
    return {"peak_bytes": rss.peak_bytes - baseline, "step_growth_bytes": rss.peak_bytes - rss.before_bytes,
            "baseline_rss_bytes": baseline, "method": f"peak RSS during the step ({rss.method}) minus the RSS "
                                                      f"before the model was built"}


def cpu_child(framework, model):
    """Runs in the child process: the framework is imported and has run every
    kind of layer once before the baseline is taken."""
    fw = Framework(framework, "cpu")
    _warm_up_framework(fw)
    return rss_peak(fw, next(c for c in CONFIGS if c["model"] == model))


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def cpu_peak(framework, model, timeout=300):
    """`cpu_child` in a fresh process whose glibc returns every freed block above 64 KiB."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory", framework, model], cwd=root,
                          env=dict(os.environ, **MALLOC_ENV), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["child failed"])[-1])
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]), process="fresh child process")


def tracemalloc_peak(fw, cfg):
    """mytensor on the CPU: the tracemalloc peak of the third step, counting
    everything allocated since before the model was built (NumPy reports its
    buffers to tracemalloc). Runs in this process: only traced memory counts."""
    gc.collect()
    tracemalloc.start()
    try:
        step = _train_step(fw, cfg)
        step()
        step()
        gc.collect()
        tracemalloc.reset_peak()
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def cpu_measure(fw, cfg):
    """The peak RSS of a step in a fresh child process; for mytensor also its tracemalloc peak."""
    out = cpu_peak(fw.name, cfg["model"])
    if fw.name == "mytensor":
        out["tracemalloc_peak_bytes"] = tracemalloc_peak(fw, cfg)
    return out


# ---------------------------------------------------------------- suite
def run(device, frameworks, quick=False, models=None, log=print):
    configs = [c for c in CONFIGS if (models is None or c["model"] in models)
               and (not quick or models is not None or c["model"] in QUICK_MODELS)]
    rows = []
    for cfg in configs:
        row = {"model": cfg["model"], "dataset": cfg["dataset"], "batch": cfg["batch"],
               "optimizer": cfg["optimizer"]}
        for name, fw in frameworks.items():
            try:
                row[name] = gpu_peak(fw, cfg) if fw.is_cuda else cpu_measure(fw, cfg)
            except Exception as e:
                row[name] = {"error": short_error(e)}
                if not quick:
                    traceback.print_exc()
            got = row[name].get("peak_bytes")
            log(f"  memory: {cfg['model']:<13} {name:<9} " +
                (f"{got / 2**20:8.2f} MiB" if got is not None else f"failed: {row[name]['error']}"))
        rows.append(row)
    what = ("peak bytes allocated during a training step (CuPy pool bytes in use / torch.cuda.max_memory_allocated),"
            " parameters, gradients, optimizer state and the batch included" if device.startswith("cuda")
            else "peak RSS during a training step minus the RSS before the model was built (a fresh process "
            "per measurement), so parameters, gradients, optimizer state and the batch are included")
    return {"measures": what, "rows": rows}


if __name__ == "__main__":  # the CPU child: python -m benchmarks.memory FRAMEWORK MODEL
    print(json.dumps(cpu_child(sys.argv[1], sys.argv[2])))
