"""What every benchmark shares: a thin adapter over mytensor and PyTorch (their
APIs are the same, so the adapter mostly picks the module), timing with
warm-up and medians, and a description of the machine.

Timing on the GPU: each repetition is bracketed by CUDA events recorded on the
current stream (`cupy.cuda.Event` for mytensor, `torch.cuda.Event` for
PyTorch) after a full device synchronisation, so queued work from earlier
repetitions never leaks into the figure. The event interval includes any time
the GPU sat idle waiting for Python to launch the next kernel, which is what a
user waits for too. On the CPU, `time.perf_counter` around each repetition.
"""
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time

_STARTED = time.perf_counter()
# Past this many seconds into the suite, the remaining measurements take their
# minimum repetitions, so the whole run stays inside its time budget (8 minutes
# on the GPU, 10 on the CPU) even where compilation or a slow path eats into it.
HURRY_AFTER_S = {"cuda": 300, "cpu": 420}


def hurry(device):
    """True once the suite has run long enough that it must save time."""
    return time.perf_counter() - _STARTED > HURRY_AFTER_S["cuda" if device.startswith("cuda") else "cpu"]


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class Framework:
    """`lib` is `mytensor` or `torch`; `F` its functional module."""

    def __init__(self, name, device):
        self.name, self.device = name, device
        self.is_cuda = device.startswith("cuda")
        if name == "mytensor":
            import mytensor as lib
            import mytensor.nn.functional as F
            import mytensor.optim as optim
        elif name == "torch":
            import torch as lib
            import torch.nn.functional as F
            import torch.optim as optim
        else:
            raise ValueError(f"unknown framework {name!r}")
        self.lib, self.F, self.optim = lib, F, optim
        if self.is_cuda and name == "mytensor":
            import cupy
            self._cupy = cupy

    # ------------------------------------------------------------ tensors
    def randn(self, *shape, requires_grad=False, low=False):
        """With `low`, in bfloat16 and (4-D) channels-last: how a mixed-precision network's
        activations and convolution weights come."""
        if not low:
            return self.lib.randn(*shape, device=self.device, requires_grad=requires_grad)
        t = self.lib.randn(*shape, device=self.device).to(self.lib.bfloat16)
        if t.ndim == 4:
            t = t.to(memory_format=self.lib.channels_last)
        return t.requires_grad_(requires_grad)

    def zeros(self, *shape):
        return self.lib.zeros(*shape, device=self.device)

    def ones(self, *shape):
        return self.lib.ones(*shape, device=self.device)

    def randint(self, high, shape):
        return self.lib.randint(0, high, tuple(shape), device=self.device)

    # ------------------------------------------------------------- models
    def model(self, name, num_classes, in_channels, image_size):
        if self.name == "mytensor":
            from mytensor.models import get_model
        else:
            from .torch_models import get_model
        return get_model(name, num_classes=num_classes, in_channels=in_channels,
                         image_size=image_size).to(self.device)

    def optimizer(self, name, params, lr, momentum=0.9, capturable=False):
        if name == "sgd":
            return self.optim.SGD(params, lr=lr, momentum=momentum)
        if name == "adam":
            kw = {"capturable": True} if capturable else {}
            return self.optim.Adam(params, lr=lr, **kw)
        raise ValueError(f"unknown optimizer {name!r}")

    # ------------------------------------------------------------- device
    def sync(self):
        if not self.is_cuda:
            return
        if self.name == "mytensor":
            self._cupy.cuda.Device().synchronize()  # every stream, whichever mytensor launches on
        else:
            self.lib.cuda.synchronize()

    def event(self):
        return (self._cupy.cuda.Event() if self.name == "mytensor" else self.lib.cuda.Event(enable_timing=True))

    def elapsed_s(self, start, end):
        if self.name == "mytensor":
            return self._cupy.cuda.get_elapsed_time(start, end) / 1e3
        return start.elapsed_time(end) / 1e3


def measure(fw, fn, warmup=2, min_reps=3, max_reps=50, budget_s=1.0):
    """Median seconds of `fn()` after `warmup` calls; repeats until `max_reps`
    or until `budget_s` has passed (but at least `min_reps` times)."""
    for _ in range(warmup):
        fn()
    fw.sync()
    times, walls = [], []
    if fw.is_cuda:
        start, end = fw.event(), fw.event()
    began = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - began < budget_s):
        if fw.is_cuda:
            fw.sync()
            t0 = time.perf_counter()
            start.record()
            fn()
            end.record()
            end.synchronize()
            walls.append(time.perf_counter() - t0)
            times.append(fw.elapsed_s(start, end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    out = {"median_s": statistics.median(times), "min_s": min(times), "reps": len(times), "warmup": warmup,
           "times_s": times}
    if walls:  # host clock around the same reps: a cross-check of the events
        out["wall_median_s"] = statistics.median(walls)
    return out


def measure_alternating(fws, fns, warmup=2, min_reps=3, max_reps=50, budget_s=2.0):
    """`measure` of several CPU callables at once, one repetition of each in turn: a busy
    machine then slows them alike, where timing one after the other lets a burst of
    load land on one. For single-threaded runs only (a thread pool spinning after its
    call would slow the next framework's). Returns one `measure`-style dict per callable."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    began = time.perf_counter()
    while len(times[0]) < max_reps and (len(times[0]) < min_reps or time.perf_counter() - began < budget_s):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [{"median_s": statistics.median(t), "min_s": min(t), "reps": len(t), "warmup": warmup, "times_s": t,
             "alternating": True} for t in times]


def settle(fw, seconds=0.3):
    """Before timing `fw` on the CPU, let the other framework's worker threads
    (OpenBLAS for NumPy, OpenMP for PyTorch), which spin a while after each
    call, go to sleep."""
    if not fw.is_cuda:
        time.sleep(seconds)


# ------------------------------------------------------------- the machine
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name():
    try:
        import cupy
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        pass
    try:
        import torch
        return torch.cuda.get_device_name(0)
    except Exception:
        return "unknown GPU"


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_tag(device):
    """`h100`, `a100`, ... for GPUs; `cpu-<model>` (or `cpu-<hostname>`) for the CPU."""
    if device.startswith("cuda"):
        name = gpu_name().lower()
        m = re.search(r"\b([a-z]{1,3}\d{2,4}[a-z]?)\b", name.replace("nvidia", ""))
        return m.group(1) if m else _slug(name)
    return "cpu-" + (_slug(cpu_model()) or _slug(socket.gethostname()))


def _version(module):
    try:
        mod = __import__(module)
        return getattr(mod, "__version__", None)
    except Exception:
        return None


def _mytensor_version():
    """Installed metadata, else the version in pyproject.toml (running from a checkout)."""
    try:
        from importlib.metadata import version
        return version("mytensor")
    except Exception:
        pass
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, "pyproject.toml")) as f:
            return re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)
    except Exception:
        return None


def load_average():
    """The 1-minute load average: above the core count, other processes shared the CPU."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info(device, torch_settings=None):
    info = {
        "loadavg_at_start": load_average(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks"] + sys.argv[1:]),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "device_name": gpu_name() if device.startswith("cuda") else cpu_model(),
        "versions": {"numpy": _version("numpy"), "torch": _version("torch"), "matplotlib": _version("matplotlib")},
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
                       if k in os.environ},
    }
    info["versions"]["mytensor"] = _mytensor_version()
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        git = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True,  # noqa: E731
                                        timeout=5).stdout.strip()
        head = git("rev-parse", "--short", "HEAD")
        dirty = "+dirty" if git("status", "--porcelain", "--", "mytensor") else ""  # uncommitted framework code
        info["git_commit"] = head + dirty if head else None
    except Exception:
        info["git_commit"] = None
    try:
        import numpy
        info["numpy_blas"] = numpy.__config__.CONFIG["Build Dependencies"]["blas"]["name"]
    except Exception:
        info["numpy_blas"] = None
    if torch_available():
        import torch
        info["torch_threads"] = torch.get_num_threads()
    if device.startswith("cuda"):
        try:
            import cupy
            info["versions"]["cupy"] = cupy.__version__
            info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
            info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
        except Exception as e:
            info["cupy_error"] = repr(e)
        if torch_available():
            import torch
            info["torch_cuda"] = torch.version.cuda
            info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if torch_settings:
        info["torch_settings"] = torch_settings
    return info


def configure_torch(device, tf32=False, threads=None):
    """Full FP32 for PyTorch too (mytensor computes in FP32), unless --tf32."""
    if not torch_available():
        return None
    import torch
    if threads:
        torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return {"allow_tf32": tf32, "cudnn_benchmark": torch.backends.cudnn.benchmark, "threads": torch.get_num_threads()}


def short_error(exc):
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 300 else text[:297] + "..."
