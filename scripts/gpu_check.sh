#!/usr/bin/env bash
# GPU validation of the CUDA backend, in one go on a machine with a GPU:
# versions, the on-disk NVRTC cache (a second start compiles nothing), the
# kernel tests against the generic NumPy code, and a few timings.
# Usage: scripts/gpu_check.sh   (writes logs under $OUT, default /tmp/gpu_check)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

echo "== versions"
$PY -m pip list 2>/dev/null | grep -i -E '^(cupy[-a-z0-9]*|numpy|scipy|pytest|torch) ' || true
$PY -c "import cupy; print('cupy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(),
      'Generator.permutation:', hasattr(cupy.random.default_rng(0), 'permutation'))" || true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

echo "== kernel cache (CUPY_CACHE_DIR in a fresh directory)"
export CUPY_CACHE_DIR="$(mktemp -d)"
cat > "$OUT/load_kernels.py" <<'PYEOF'
import os, sys, time
sys.path.insert(0, os.getcwd())
t0 = time.perf_counter()
import cupy
import numpy as np
from mytensor.backend import cuda as C
b = C.CUDABackend()
t1 = time.perf_counter()
for f, kernels in C._KERNEL_FILES.items():
    for k in kernels:
        for dt in (np.float32, np.float64):
            b._kernels.get(f, k, np.dtype(dt))
cupy.cuda.Device().synchronize()
t2 = time.perf_counter()
files = sorted(os.listdir(os.environ["CUPY_CACHE_DIR"]))
print(f"backend init {t1 - t0:.2f}s, loading all {len(C._KERNEL_FILES)} kernel files {t2 - t1:.2f}s, "
      f"{len(files)} files in the cache dir")
PYEOF
$PY "$OUT/load_kernels.py"     # first start: NVRTC compiles and fills the cache
$PY "$OUT/load_kernels.py"     # second start: loads from the cache
ls -la "$CUPY_CACHE_DIR" | head -20

echo "== tests"
$PY -m pytest -q -s -rs -p no:cacheprovider tests/test_cuda_backend.py tests/test_cu_compile.py 2>&1 | tee "$OUT/pytest.log" | tail -40

echo "== timings (ours vs the generic code on CuPy, per call)"
cat > "$OUT/bench.py" <<'PYEOF'
import os, sys
sys.path.insert(0, os.getcwd())
import cupy
import numpy as np
from cupyx.profiler import benchmark
from mytensor.backend import cuda as C
from mytensor.backend.array_backend import ArrayBackend as G
b = C.CUDABackend()
r = np.random.default_rng(0)
f = np.float32
x = cupy.asarray(r.standard_normal((64, 64, 32, 32)).astype(f))
cols = b.im2col(x, (3, 3), (1, 1), (1, 1), (1, 1))
logits = cupy.asarray(r.standard_normal((256, 1000)).astype(f))
tgt = cupy.asarray(r.integers(0, 1000, 256))
xb = cupy.asarray(r.standard_normal((64, 64, 1024)).astype(f))
w, bb = cupy.ones(64, f), cupy.zeros(64, f)
ps = [cupy.asarray(r.standard_normal(s).astype(f)) for s in [(64, 3, 3, 3), (64,), (128, 64, 3, 3), (128,), (256, 128, 3, 3), (256,), (10, 256)] * 4]
gs = [cupy.ones_like(p) for p in ps]; ms = [cupy.zeros_like(p) for p in ps]; vs = [cupy.zeros_like(p) for p in ps]
cases = {
    "im2col 64x64x32x32 k3": lambda m: m(b, x, (3, 3), (1, 1), (1, 1), (1, 1)),
    "col2im 64x64x32x32 k3": lambda m: m(b, cols, x.shape, (3, 3), (1, 1), (1, 1), (1, 1)),
    "max_pool2d k2s2": lambda m: m(b, x, (2, 2), (2, 2), (0, 0)),
    "gelu 4M": lambda m: m(b, x),
    "softmax_ce 256x1000": lambda m: m(b, logits, tgt, 0.1),
    "batch_norm_train 64x64x1024": lambda m: m(b, xb, w, bb, 1e-5),
    "adam 28 params": lambda m: m(b, ps, gs, ms, vs, step=3, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                                  weight_decay=0.0, decoupled=False),
}
meth = {"im2col 64x64x32x32 k3": "im2col", "col2im 64x64x32x32 k3": "col2im", "max_pool2d k2s2": "max_pool2d", "gelu 4M": "gelu",
        "softmax_ce 256x1000": "softmax_cross_entropy", "batch_norm_train 64x64x1024": "batch_norm_train",
        "adam 28 params": "adam_update"}
for name, m in meth.items():
    ours = benchmark(cases[name], (getattr(C.CUDABackend, m),), n_repeat=20, n_warmup=3)
    gen = benchmark(cases[name], (getattr(G, m),), n_repeat=20, n_warmup=3)
    print(f"{name:32s} ours {ours.gpu_times.mean() * 1e3:8.3f} ms   generic {gen.gpu_times.mean() * 1e3:8.3f} ms")
PYEOF
$PY "$OUT/bench.py" 2>&1 | tail -12
