"""The CUDA backend's own kernels against the generic NumPy versions.

Every method CUDABackend overrides runs on fresh random inputs of odd shapes
on both backends; the results must agree to rounding (float32 ~1e-5,
float64 ~1e-10). The GPU tests are skipped where CuPy or a GPU is missing;
a few checks of the host side (the Philox reference, the error without CuPy)
run everywhere.

Only `mytensor.backend` is imported. Run with pytest, or as a script.
"""
import importlib.util
import math
import os
import sys

import ml_dtypes
import numpy as np
import pytest


def _import_backend():
    try:
        import mytensor.backend as backend
        return backend
    except Exception:  # the rest of the package is mid-edit: load the backend package on its own
        root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mytensor", "backend")
        spec = importlib.util.spec_from_file_location("mytensor_backend_standalone", os.path.join(root, "__init__.py"),
                                                      submodule_search_locations=[root])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


backend = _import_backend()
HAVE_GPU = backend.cuda_is_available()


def gpu_test(fn):
    """Marked `gpu` (registered in pyproject.toml) and skipped without CuPy and a GPU."""
    return pytest.mark.gpu(pytest.mark.skipif(not HAVE_GPU, reason="no CUDA GPU (or CuPy not installed)")(fn))


if HAVE_GPU:
    import cupy
else:
    cupy = None

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}


def tol(dtype, scale=1.0):
    t = TOL[np.dtype(dtype).type]
    return dict(rtol=t["rtol"] * scale, atol=t["atol"] * scale)


def _erf_without_scipy(a):
    a = np.asarray(a)
    return np.vectorize(math.erf, otypes=[a.dtype])(a)


@pytest.fixture(scope="module")
def cpu():
    try:
        return backend.get_backend("cpu")
    except ImportError:  # no SciPy here: the same generic kernels, with math.erf for GELU
        return backend.ArrayBackend(np, backend.Device("cpu"), erf=_erf_without_scipy)


@pytest.fixture(scope="module")
def cuda():
    return backend.get_backend("cuda")


def to_gpu(a):
    return cupy.asarray(a)


def close(gpu_arr, cpu_arr, dtype, scale=1.0, exact=False):
    got = cupy.asnumpy(gpu_arr)
    want = np.asarray(cpu_arr)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, **tol(dtype, scale))


# ------------------------------------------------------------ host-side checks
def _philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Reference Philox4x32-10 on uint64 NumPy arrays holding 32-bit words."""
    mask = np.uint64(0xFFFFFFFF)
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    k0, k1 = int(k0), int(k1)
    for r in range(10):
        if r:
            k0 = (k0 + 0x9E3779B9) & 0xFFFFFFFF
            k1 = (k1 + 0xBB67AE85) & 0xFFFFFFFF
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), p1 & mask,
                          (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1), p0 & mask)
    return c0, c1, c2, c3


def reference_dropout_mask(n, p, dtype, seed, offset):
    """What dropout.cu computes for element i: word i%4 of Philox(counter offset + i/4, key seed)."""
    i = np.arange(n, dtype=np.uint64)
    c = np.uint64(offset) + i // np.uint64(4)
    words = _philox4x32_10(c & np.uint64(0xFFFFFFFF), c >> np.uint64(32), np.zeros_like(c), np.zeros_like(c),
                           seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    word = np.choose((i % np.uint64(4)).astype(np.int64), words)
    u = (word >> np.uint64(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    dtype = np.dtype(dtype)
    return np.where(u >= np.float32(p), dtype.type(1.0 / (1.0 - p)), dtype.type(0)).astype(dtype)


def test_philox_reference_known_answers():
    """The Random123 known-answer vectors for Philox4x32-10."""
    kat = [((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
           ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
           ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
            (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1))]
    for ctr, key, want in kat:
        got = _philox4x32_10(*(np.array([v], dtype=np.uint64) for v in ctr), *key)
        assert [int(w[0]) for w in got] == list(want)


def test_module_imports_without_cupy():
    """backend.cuda imports anywhere; without CuPy the backend says what to install."""
    spec_name = backend.__name__ + ".cuda"
    mod = importlib.import_module(spec_name)
    assert hasattr(mod, "CUDABackend") and hasattr(mod, "is_available")
    if importlib.util.find_spec("cupy") is None:
        assert backend.cuda_is_available() is False
        with pytest.raises(RuntimeError, match="needs CuPy"):
            mod.CUDABackend(backend.Device("cuda", 0))


# --------------------------------------------------------------- convolution
CONV_CASES = [
    # (N, C, H, W), kernel, stride, padding, dilation
    ((1, 3, 7, 9), (1, 1), (1, 1), (0, 0), (1, 1)),
    ((2, 5, 8, 7), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((1, 7, 11, 10), (5, 5), (2, 2), (2, 2), (1, 1)),
    ((3, 3, 9, 9), (3, 3), (2, 2), (0, 0), (2, 2)),
    ((2, 5, 10, 12), (3, 5), (2, 1), (1, 2), (2, 1)),
    ((1, 3, 6, 5), (3, 3), (3, 2), (2, 1), (1, 1)),
    ((1, 7, 13, 13), (5, 5), (1, 1), (2, 2), (2, 2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@gpu_test
def test_im2col_col2im(cpu, cuda, case, dtype):
    shape, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    want = cpu.im2col(x, kernel, stride, padding, dilation)
    got = cuda.im2col(to_gpu(x), kernel, stride, padding, dilation)
    close(got, want, dtype, exact=True)
    cols = rng.standard_normal(want.shape).astype(dtype)
    close(cuda.col2im(to_gpu(cols), shape, kernel, stride, padding, dilation),
          cpu.col2im(cols, shape, kernel, stride, padding, dilation), dtype)


@pytest.mark.parametrize("dtype", DTYPES + [np.float16, ml_dtypes.bfloat16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(3, 5, 16), (4, 2, 7, 3), (1, 9, 8), (5, 3)], ids=str)
@gpu_test
def test_swap_leading(cpu, cuda, shape, dtype):
    x = np.random.default_rng().standard_normal(shape).astype(dtype)
    got = cuda.swap_leading(to_gpu(x))
    assert got.flags.c_contiguous and got.dtype == x.dtype
    np.testing.assert_array_equal(cupy.asnumpy(got), cpu.swap_leading(x))


@pytest.mark.parametrize("dtype", DTYPES + [np.float16, ml_dtypes.bfloat16], ids=lambda d: np.dtype(d).name)
@gpu_test
def test_layout_changes_are_tiled_transposes(cuda, dtype, monkeypatch):
    """NCHW <-> channels-last copies, sliced batches included, run as one transpose kernel and equal
    CuPy's copy; other layouts are left to CuPy."""
    launched = []
    real = cuda._launch
    monkeypatch.setattr(cuda, "_launch", lambda *a, **k: (launched.append(a[1]), real(*a, **k))[1])
    rng = np.random.default_rng()
    for _ in range(4):
        n, c, h, w = (int(v) for v in rng.integers(1, 40, 4))
        x = cupy.asarray(rng.standard_normal((n, c, h, w)).astype(dtype))
        cl = cupy.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # channels-last NCHW view
        for view in (x.transpose(0, 2, 3, 1), cl, cl[n // 2:], x[n // 2:].transpose(0, 2, 3, 1)):
            launched.clear()
            got = cuda.ascontiguousarray(view)
            assert got.flags.c_contiguous and got.shape == view.shape
            np.testing.assert_array_equal(cupy.asnumpy(got), cupy.asnumpy(cupy.ascontiguousarray(view)))
            assert launched == ([] if view.flags.c_contiguous else ["transpose_batched"])
    launched.clear()
    odd = cupy.asarray(rng.standard_normal((3, 4, 5, 6)).astype(dtype)).transpose(0, 3, 2, 1)
    np.testing.assert_array_equal(cupy.asnumpy(cuda.ascontiguousarray(odd)), cupy.asnumpy(odd))
    assert launched == []


# ------------------------------------------------------------------- pooling
POOL_CASES = [
    # (N, C, H, W), kernel, stride, padding
    ((1, 3, 8, 8), (2, 2), (2, 2), (0, 0)),
    ((2, 5, 7, 9), (3, 3), (1, 1), (1, 1)),
    ((1, 7, 9, 7), (3, 3), (2, 2), (1, 1)),
    ((2, 3, 11, 10), (5, 5), (2, 2), (2, 2)),
    ((1, 5, 6, 7), (3, 2), (2, 1), (1, 0)),
    ((1, 3, 5, 5), (1, 1), (1, 1), (0, 0)),
    ((2, 4, 8, 8), (8, 8), (8, 8), (0, 0)),    # global pooling
    ((1, 3, 10, 11), (2, 2), (3, 3), (0, 0)),  # stride past the kernel: inputs no window covers
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@gpu_test
def test_max_pool2d(cpu, cuda, case, dtype):
    shape, kernel, stride, padding = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    out, arg = cpu.max_pool2d(x, kernel, stride, padding)
    gout, garg = cuda.max_pool2d(to_gpu(x), kernel, stride, padding)
    close(gout, out, dtype, exact=True)
    close(garg, arg, dtype, exact=True)
    g = rng.standard_normal(out.shape).astype(dtype)
    close(cuda.max_pool2d_backward(to_gpu(g), garg, shape), cpu.max_pool2d_backward(g, arg, shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@gpu_test
def test_avg_pool2d(cpu, cuda, case, include_pad, dtype):
    shape, kernel, stride, padding = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    out = cpu.avg_pool2d(x, kernel, stride, padding, include_pad)
    close(cuda.avg_pool2d(to_gpu(x), kernel, stride, padding, include_pad), out, dtype)
    g = rng.standard_normal(out.shape).astype(dtype)
    close(cuda.avg_pool2d_backward(to_gpu(g), shape, kernel, stride, padding, include_pad),
          cpu.avg_pool2d_backward(g, shape, kernel, stride, padding, include_pad), dtype)


# --------------------------------------------------------------- activations
ACTIVATIONS = [
    # name, forward args, backward name, backward takes the output (else the input), extra args
    ("relu", "relu_backward", True, ()),
    ("leaky_relu", "leaky_relu_backward", False, (0.01,)),
    ("leaky_relu", "leaky_relu_backward", False, (0.2,)),
    ("sigmoid", "sigmoid_backward", True, ()),
    ("tanh", "tanh_backward", True, ()),
    ("gelu", "gelu_backward", False, ("none",)),
    ("gelu", "gelu_backward", False, ("tanh",)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (2, 7, 1, 33)], ids=str)
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a[0] + "".join(f"-{v}" for v in a[3]))
@gpu_test
def test_activation(cpu, cuda, act, shape, dtype):
    fwd, bwd, uses_output, extra = act
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.flat[0] = 0  # the kink
    y = getattr(cpu, fwd)(x, *extra)
    gy = getattr(cuda, fwd)(to_gpu(x), *extra)
    close(gy, y, dtype)
    g = rng.standard_normal(shape).astype(dtype)
    saved_cpu, saved_gpu = (y, gy) if uses_output else (x, to_gpu(x))
    close(getattr(cuda, bwd)(to_gpu(g), saved_gpu, *extra), getattr(cpu, bwd)(g, saved_cpu, *extra), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@gpu_test
def test_activation_noncontiguous_and_extremes(cpu, cuda, dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((6, 9)) * 50).astype(dtype)
    x[0, :4] = [0, 1e4, -1e4, np.nan]
    xt = x.T  # a transposed view: the kernels take a contiguous copy
    for fwd, extra in [("relu", ()), ("sigmoid", ()), ("tanh", ()), ("gelu", ("none",)), ("gelu", ("tanh",)),
                       ("leaky_relu", (0.1,))]:
        got = getattr(cuda, fwd)(to_gpu(x).T, *extra)
        close(got, getattr(cpu, fwd)(xt, *extra), dtype)
    g = np.broadcast_to(np.asarray(1.5, dtype=dtype), (9, 6))  # a broadcast gradient
    y = cpu.sigmoid(xt)
    close(cuda.sigmoid_backward(cupy.broadcast_to(cupy.asarray(1.5, dtype=dtype), (9, 6)), to_gpu(y)),
          cpu.sigmoid_backward(g, y), dtype)


# ---------------------------------------------------------------- arithmetic
@pytest.mark.parametrize("dtype", DTYPES + [np.float16, ml_dtypes.bfloat16], ids=lambda d: np.dtype(d).name)
@gpu_test
def test_add_packed_equals_cupy_add(cuda, dtype):
    """add_packed (16-byte packs, the remainder one element a thread) gives CuPy's sums bit for
    bit: contiguous and channels-last operands of sizes that are not multiples of a pack; a
    misaligned view, mixed layouts and a broadcast go to CuPy and agree as well."""
    rng = np.random.default_rng()
    for shape in [(7,), (1000, 3), (3, 5, 7, 9), (2, 16, 4, 6)]:
        a, b = (to_gpu(rng.standard_normal(shape).astype(dtype)) for _ in range(2))
        close(cuda.add(a, b), cupy.asnumpy(a + b), dtype, exact=True)
        if len(shape) == 4:
            ca, cb = (cupy.ascontiguousarray(v.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) for v in (a, b))
            out = cuda.add(ca, cb)
            assert out.transpose(0, 2, 3, 1).flags.c_contiguous  # channels-last kept
            close(out, cupy.asnumpy(a + b), dtype, exact=True)
            close(cuda.add(ca, b), cupy.asnumpy(a + b), dtype, exact=True)
    a, b = (to_gpu(rng.standard_normal(1001).astype(dtype)) for _ in range(2))
    close(cuda.add(a[1:], b[1:]), cupy.asnumpy(a[1:] + b[1:]), dtype, exact=True)
    close(cuda.add(a[:, None], b), cupy.asnumpy(a[:, None] + b), dtype, exact=True)


# ---------------------------------------------------- softmax cross-entropy
SCE_CASES = [(1, 3), (7, 10), (33, 1000), (5, 1500), (3, 5000)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("shape", SCE_CASES, ids=str)
@gpu_test
def test_softmax_cross_entropy(cpu, cuda, shape, ignore_index, smoothing, dtype):
    n, c = shape
    rng = np.random.default_rng(6)
    logits = (rng.standard_normal(shape) * 10).astype(dtype)
    logits[0, 0] = 80  # exp would overflow float32 without the max shift
    target = rng.integers(0, c, n).astype(np.int64)
    if n > 2:
        target[1] = ignore_index if ignore_index < 0 else target[1]
        target[2] = 2 if c > 2 else target[2]
    loss, probs = cpu.softmax_cross_entropy(logits, target, smoothing, ignore_index)
    gloss, gprobs = cuda.softmax_cross_entropy(to_gpu(logits), to_gpu(target), smoothing, ignore_index)
    close(gloss, loss, dtype)
    close(gprobs, probs, dtype)
    grad = rng.standard_normal(n).astype(dtype)
    close(cuda.softmax_cross_entropy_backward(to_gpu(grad), gprobs, to_gpu(target), smoothing, ignore_index),
          cpu.softmax_cross_entropy_backward(grad, probs, target, smoothing, ignore_index), dtype)
    # the gradient of a mean: one scalar broadcast over the rows
    sgrad = np.broadcast_to(np.asarray(1.0 / n, dtype=dtype), (n,))
    close(cuda.softmax_cross_entropy_backward(cupy.broadcast_to(cupy.asarray(1.0 / n, dtype=dtype), (n,)), gprobs,
                                              to_gpu(target), smoothing, ignore_index),
          cpu.softmax_cross_entropy_backward(sgrad, probs, target, smoothing, ignore_index), dtype)
    # reduced: the sum or mean in one launch, and the mean's gradient divided by its count in the kernel
    for mean in (False, True):
        total, count = cpu.reduce_class_loss(loss, target, ignore_index, mean)
        gtotal, gcount = cuda.reduce_class_loss(gloss, to_gpu(target), ignore_index, mean)
        close(gtotal, total, dtype)
        assert float(gcount) == float(count) == float((target != ignore_index).sum())
        g0 = np.asarray(rng.standard_normal(), dtype=dtype)
        close(cuda.softmax_cross_entropy_backward(to_gpu(g0), gprobs, to_gpu(target), smoothing, ignore_index,
                                                  gcount if mean else None),
              cpu.softmax_cross_entropy_backward(g0, probs, target, smoothing, ignore_index, count if mean else None),
              dtype)
    every_ignored = np.full(n, ignore_index, dtype=np.int64)
    gtotal, gcount = cuda.reduce_class_loss(cupy.zeros(n, dtype), to_gpu(every_ignored), ignore_index, True)
    assert np.isnan(float(gtotal)) and float(gcount) == 0  # as PyTorch: a NaN mean, and a zero gradient
    assert not cupy.asnumpy(cuda.softmax_cross_entropy_backward(
        cupy.asarray(1.0, dtype), gprobs, to_gpu(every_ignored), smoothing, ignore_index, gcount)).any()


# ---------------------------------------------------------------- batch norm
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3, 1), (4, 5, 7), (2, 7, 33), (16, 3, 1000), (1, 5, 49)], ids=str)
@gpu_test
def test_batch_norm(cpu, cuda, shape, dtype):
    rng = np.random.default_rng(7)
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    w = rng.standard_normal(c).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    y, mean, invstd = cpu.batch_norm_train(x, w, b, 1e-5)
    gy, gmean, ginvstd = cuda.batch_norm_train(to_gpu(x), to_gpu(w), to_gpu(b), 1e-5)
    close(gmean, mean, dtype, scale=5)
    close(ginvstd, invstd, dtype, scale=5)
    close(gy, y, dtype, scale=5)
    g = rng.standard_normal(shape).astype(dtype)
    dx, dw, db = cpu.batch_norm_backward(g, x, w, b, mean, invstd)
    gdx, gdw, gdb = cuda.batch_norm_backward(to_gpu(g), to_gpu(x), to_gpu(w), to_gpu(b), gmean, ginvstd)
    close(gdb, db, dtype, scale=5)
    close(gdw, dw, dtype, scale=5)
    close(gdx, dx, dtype, scale=10)
    if shape[0] * shape[2] == 1:
        return  # one value per channel: no unbiased variance to move the running one by
    # the running statistics, moved by the finishing kernel on the GPU, by NumPy on the CPU
    rm, rv = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    grm, grv = to_gpu(rm), to_gpu(rv)
    cpu.batch_norm_train(x, w, b, 1e-5, running=(rm, rv, 0.3))
    cuda.batch_norm_train(to_gpu(x), to_gpu(w), to_gpu(b), 1e-5, running=(grm, grv, 0.3))
    close(grm, rm, dtype, scale=5)
    close(grv, rv, dtype, scale=5)


SIXTEEN_BIT = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]


def close16(gpu_arr, ref, what, tol=1e-2):
    """A 16-bit kernel against the float64 reference by normwise relative error (float16
    results carry about 5e-4, bfloat16 about 4e-3)."""
    got = cupy.asnumpy(gpu_arr).astype(np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert np.isfinite(got).all(), what
    err = np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30)
    assert err < tol, f"{what}: relative error {err:.3g}"


@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=str)
@gpu_test
def test_sixteen_bit_kernels(cpu, cuda, dtype):
    """Convolution columns, pooling, ReLU and batch norm in float16/bfloat16 (the last with
    float32 parameters) against float64, on odd shapes and on 16-byte-aligned ones."""
    rng = np.random.default_rng()
    tol = 2e-3 if dtype == np.float16 else 1e-2
    for shape, kernel, stride, padding, dilation in CONV_CASES[:5]:
        x = rng.standard_normal(shape).astype(dtype)
        x64 = x.astype(np.float64)
        cols = cuda.im2col(to_gpu(x), kernel, stride, padding, dilation)
        assert cols.dtype == dtype
        np.testing.assert_array_equal(cupy.asnumpy(cols).astype(np.float64),
                                      cpu.im2col(x64, kernel, stride, padding, dilation))  # a copy: exact
        c = rng.standard_normal(cols.shape).astype(dtype)
        close16(cuda.col2im(to_gpu(c), shape, kernel, stride, padding, dilation),
                cpu.col2im(c.astype(np.float64), shape, kernel, stride, padding, dilation), "col2im", tol)
    for shape, kernel, stride, padding in POOL_CASES:
        x = rng.standard_normal(shape).astype(dtype)
        out, arg = cuda.max_pool2d(to_gpu(x), kernel, stride, padding)
        ref, ref_arg = cpu.max_pool2d(x.astype(np.float64), kernel, stride, padding)
        np.testing.assert_array_equal(cupy.asnumpy(out).astype(np.float64), ref)
        np.testing.assert_array_equal(cupy.asnumpy(arg), ref_arg)
        g = rng.standard_normal(ref.shape).astype(dtype)
        close16(cuda.max_pool2d_backward(to_gpu(g), arg, shape),
                cpu.max_pool2d_backward(g.astype(np.float64), ref_arg, shape), "max_pool2d_backward", tol)
        close16(cuda.avg_pool2d(to_gpu(x), kernel, stride, padding),
                cpu.avg_pool2d(x.astype(np.float64), kernel, stride, padding), "avg_pool2d", tol)
        close16(cuda.avg_pool2d_backward(to_gpu(g), shape, kernel, stride, padding),
                cpu.avg_pool2d_backward(g.astype(np.float64), shape, kernel, stride, padding), "avg_pool2d_bwd", tol)
    x = rng.standard_normal((3, 5, 7)).astype(dtype)
    np.testing.assert_array_equal(cupy.asnumpy(cuda.relu(to_gpu(x))), np.maximum(x, 0))
    np.testing.assert_array_equal(cupy.asnumpy(cuda.relu_backward(to_gpu(x), to_gpu(x))), x * (x > 0))
    g = rng.standard_normal(x.shape).astype(dtype)
    for approximate in ("none", "tanh"):  # computed in float32, rounded once
        close16(cuda.gelu(to_gpu(x), approximate), cpu.gelu(x.astype(np.float64), approximate), "gelu", tol)
        close16(cuda.gelu_backward(to_gpu(g), to_gpu(x), approximate),
                cpu.gelu_backward(g.astype(np.float64), x.astype(np.float64), approximate), "gelu_backward", tol)
    # (R, C, 1): channels-last rows, the last two on the `rows` kernels (24 channels: idle lanes)
    for shape in [(1, 3, 1), (4, 5, 7), (16, 3, 1000), (8, 16, 64), (2, 5, 49), (700, 24, 1), (333, 512, 1)]:
        x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
        w, b = rng.standard_normal(shape[1]).astype(np.float32), rng.standard_normal(shape[1]).astype(np.float32)
        x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
        y, mean, invstd = cuda.batch_norm_train(to_gpu(x), to_gpu(w), to_gpu(b), 1e-5)
        ry, rmean, rinvstd = cpu.batch_norm_train(x64, w64, b64, 1e-5)
        assert y.dtype == dtype and mean.dtype == np.float32
        close16(y, ry, f"batch_norm y {shape}", tol)
        close16(mean, rmean, "batch_norm mean", 1e-5)
        close16(invstd, rinvstd, "batch_norm invstd", 1e-5)
        g = rng.standard_normal(shape).astype(dtype)
        dx, dw, db = cuda.batch_norm_backward(to_gpu(g), to_gpu(x), to_gpu(w), to_gpu(b), mean, invstd)
        rdx, rdw, rdb = cpu.batch_norm_backward(g.astype(np.float64), x64, w64, b64, rmean, rinvstd)
        assert dx.dtype == dtype and dw.dtype == np.float32
        close16(dx, rdx, f"batch_norm dx {shape}", 2 * tol)
        close16(dw, rdw, "batch_norm dweight", 1e-4)
        close16(db, rdb, "batch_norm dbias", 1e-4)
        for act in cpu.BN_ACTIVATIONS:  # fused activations, against the float64 formulas
            y, _, _ = cuda.batch_norm_train(to_gpu(x), to_gpu(w), to_gpu(b), 1e-5, act)
            close16(y, cpu.activation(ry, act), f"batch_norm {act} y {shape}", tol)
            dx, dw, db = cuda.batch_norm_backward(to_gpu(g), to_gpu(x), to_gpu(w), to_gpu(b), mean, invstd, act)
            rdx, rdw, rdb = cpu.batch_norm_backward(g.astype(np.float64), x64, w64, b64, rmean, rinvstd, act)
            close16(dx, rdx, f"batch_norm {act} dx {shape}", 2 * tol)
            close16(dw, rdw, f"batch_norm {act} dweight", 1e-3)
            close16(db, rdb, f"batch_norm {act} dbias", 1e-3)


@pytest.mark.parametrize("dtype", SIXTEEN_BIT + [np.dtype(np.float32)], ids=str)
@pytest.mark.parametrize("tf32", [False, True])
@gpu_test
def test_matmul_precisions(cuda, dtype, tf32):
    """16-bit products accumulate in float32 (error of the rounded inputs and output only); float32 is
    strict by default and near 3e-4 with TF32 allowed."""
    from mytensor.backend import matmul_precision
    if tf32 and dtype != np.float32:
        pytest.skip("TF32 concerns float32 products only")
    rng = np.random.default_rng()
    a, b = rng.standard_normal((3, 200, 1000)).astype(dtype), rng.standard_normal((1000, 300)).astype(dtype)
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    matmul_precision.set_float32_matmul_precision("high" if tf32 else "highest")
    try:
        out = cuda.matmul(to_gpu(a), to_gpu(b))
    finally:
        matmul_precision.set_float32_matmul_precision("highest")
    assert out.dtype == dtype
    err = np.linalg.norm(cupy.asnumpy(out).astype(np.float64) - ref) / np.linalg.norm(ref)
    bound = {"float16": 1e-3, "bfloat16": 1e-2, "float32": 1e-3 if tf32 else 1e-6}[str(dtype)]
    assert err < bound, err
    if dtype == np.float32 and tf32:
        assert err > 1e-5  # TF32 really ran: strict FP32 would be near 1e-7


# ------------------------------------------------------------------- dropout
@pytest.mark.parametrize("dtype", DTYPES)
@gpu_test
def test_dropout_mask_matches_reference_philox(cuda, dtype):
    cuda.seed(1234)
    m1 = cuda.dropout_mask((37,), 0.3, np.dtype(dtype))
    m2 = cuda.dropout_mask((5, 7), 0.3, np.dtype(dtype))
    np.testing.assert_array_equal(cupy.asnumpy(m1), reference_dropout_mask(37, 0.3, dtype, 1234, 0))
    # the host offset moved on by ceil(37 / 4) counters
    np.testing.assert_array_equal(cupy.asnumpy(m2).ravel(), reference_dropout_mask(35, 0.3, dtype, 1234, 10))
    assert m2.shape == (5, 7) and m2.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@gpu_test
def test_dropout_mask_statistics(cuda, p, dtype):
    shape = (999, 1001)
    cuda.seed(42)
    a = cupy.asnumpy(cuda.dropout_mask(shape, p, np.dtype(dtype)))
    b = cupy.asnumpy(cuda.dropout_mask(shape, p, np.dtype(dtype)))
    n = a.size
    scale = np.dtype(dtype).type(1.0 / (1.0 - p))
    for m in (a, b):
        assert m.shape == shape and m.dtype == dtype
        assert set(np.unique(m).tolist()) <= {0.0, float(scale)}
        frac = (m == 0).mean()
        assert abs(frac - p) < 6 * math.sqrt(p * (1 - p) / n), frac
        assert abs(m.mean() - 1.0) < 6 * math.sqrt(p / (1 - p) / n)  # E[mask] = 1
    assert (a != b).mean() > 0.1  # a fresh mask every call
    # no correlation between neighbours (the 4 words of one Philox block)
    flat = (a.ravel() != 0).astype(np.float64)
    corr = np.corrcoef(flat[:-1], flat[1:])[0, 1]
    assert abs(corr) < 0.01
    cuda.seed(42)  # same seed and offset: the same masks again
    np.testing.assert_array_equal(cupy.asnumpy(cuda.dropout_mask(shape, p, np.dtype(dtype))), a)
    np.testing.assert_array_equal(cupy.asnumpy(cuda.dropout_mask(shape, p, np.dtype(dtype))), b)
    cuda.seed(43)
    assert (cupy.asnumpy(cuda.dropout_mask(shape, p, np.dtype(dtype))) != a).mean() > 0.1


@pytest.mark.parametrize("dtype", ["float16", ml_dtypes.bfloat16])
@gpu_test
def test_dropout_mask_16_bit_is_the_float_mask_rounded(cuda, dtype):
    cuda.seed(5)
    m = cupy.asnumpy(cuda.dropout_mask((5, 7), 0.3, np.dtype(dtype))).astype(np.float32)
    want = reference_dropout_mask(35, 0.3, "float32", 5, 0).reshape(5, 7)
    np.testing.assert_array_equal(m, want.astype(np.dtype(dtype)).astype(np.float32))


@gpu_test
def test_dropout_mask_replayed_from_a_graph_moves_on(cuda):
    """The offset lives on the device and the kernel moves it on: each replay of a recorded mask
    is the next mask of the stream, as eager calls would draw them."""
    cuda.seed(7)
    graph = cuda.capture_graph(lambda: cuda.dropout_mask((37,), 0.3, np.dtype("float32")))
    masks = []
    for _ in range(3):
        graph.replay()
        masks.append(cupy.asnumpy(graph.outputs))
    eager = cuda.dropout_mask((37,), 0.3, np.dtype("float32"))  # after three draws of 10 counters
    for k, m in enumerate(masks + [cupy.asnumpy(eager)]):
        np.testing.assert_array_equal(m, reference_dropout_mask(37, 0.3, "float32", 7, 10 * k))


# --------------------------------------------------------------- optimizers
PARAM_SHAPES = [(1,), (7,), (3, 11), (1000,), (5, 3, 3, 3), (), (33, 17)]

SGD_CONFIGS = [
    dict(lr=0.1, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
    dict(lr=0.05, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0),
    dict(lr=0.05, momentum=0.9, dampening=0.1, nesterov=False, weight_decay=1e-2),
    dict(lr=0.01, momentum=0.8, dampening=0.0, nesterov=True, weight_decay=5e-3),
]


def _params(rng, dtype, shapes=PARAM_SHAPES):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _sgd_args(be, lr, momentum, dampening, nesterov, weight_decay):
    """(scalars, has_weight_decay, nesterov) as `SGD.prepare_step` passes them."""
    return be.write_scalars([lr, momentum, dampening, weight_decay]), bool(weight_decay), nesterov


def _adam_args(be, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """(scalars, has_weight_decay, decoupled) as `Adam.prepare_step` passes them."""
    scalars = [lr / (1 - beta1 ** step), beta1, beta2, math.sqrt(1 - beta2 ** step), eps, weight_decay,
               1 - lr * weight_decay]
    return be.write_scalars(scalars), bool(weight_decay), decoupled


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@gpu_test
def test_sgd_update(cpu, cuda, config, dtype):
    rng = np.random.default_rng(8)
    params = _params(rng, dtype)
    bufs = [np.zeros_like(p) for p in params]
    gparams = [to_gpu(p) for p in params]
    gbufs = [to_gpu(b) for b in bufs]
    for step in range(5):
        grads = _params(rng, dtype)
        first = step == 0
        cpu.sgd_update(params, grads, bufs if config["momentum"] else [None] * len(params),
                       *_sgd_args(cpu, **config), first_step=first)
        cuda.sgd_update(gparams, [to_gpu(g) for g in grads], gbufs if config["momentum"] else [None] * len(params),
                        *_sgd_args(cuda, **config), first_step=first)
        for gp, p in zip(gparams, params):
            close(gp, p, dtype)
        if config["momentum"]:
            for gb, b in zip(gbufs, bufs):
                close(gb, b, dtype)


@pytest.mark.parametrize("backend_name", ["cpu", "cuda"])
@gpu_test
def test_updates_skip_on_the_device_flag(cpu, cuda, backend_name):
    """With the loss scaler's flag set, SGD and Adam leave parameters and state as they were;
    with it clear they do exactly the unflagged update. Loss scaling's two kernels too."""
    be = cpu if backend_name == "cpu" else cuda
    xp = np if be is cpu else cupy
    rng = np.random.default_rng()
    f = np.float32
    for flag in (0.0, 1.0):
        base = [rng.standard_normal(s).astype(f) for s in [(5,), (3, 4)]]
        grads = [xp.asarray(rng.standard_normal(p.shape).astype(f)) for p in base]
        runs = []
        for skip in (xp.asarray(np.float32(flag)), None):
            params = [xp.asarray(p.copy()) for p in base]
            bufs, ms, vs = ([xp.asarray(np.full(p.shape, 0.5, f)) for p in base] for _ in range(3))
            be.sgd_update(params, grads, bufs, *_sgd_args(be, 0.1, 0.9, 0.0, True, 1e-4), first_step=False,
                          skip=skip)
            be.adam_update(params, grads, ms, vs, *_adam_args(be, 2, 1e-3, 0.9, 0.999, 1e-8, 0.0, False), skip=skip)
            runs.append([np.asarray(cupy.asnumpy(a) if xp is cupy else a) for a in params + bufs + ms + vs])
        if flag:
            for a, p in zip(runs[0][:2], base):
                np.testing.assert_array_equal(a, p)  # untouched
        else:
            for a, b in zip(*runs):
                np.testing.assert_array_equal(a, b)
    grads = [xp.asarray(np.array([1.0, 2.0], f)), xp.asarray(np.array([np.inf, 4.0], f))]
    found = be.unscale_grads(grads, xp.asarray(np.float32(0.5)))
    assert float(found) == 1.0 and float(grads[0][1]) == 1.0
    scale, tracker = xp.asarray(np.float32(8.0)), xp.asarray(np.int32(1))
    be.update_loss_scale(scale, tracker, xp.asarray(np.float32(0.0)), 2.0, 0.5, 2)
    assert float(scale) == 16.0 and int(tracker) == 0
    be.update_loss_scale(scale, tracker, found, 2.0, 0.5, 2)
    assert float(scale) == 8.0 and int(tracker) == 0


ADAM_CONFIGS = [
    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False),
    dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=1e-2, decoupled=False),
    dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, decoupled=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@gpu_test
def test_adam_update(cpu, cuda, config, dtype):
    rng = np.random.default_rng(9)
    params = _params(rng, dtype)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    gparams, gm, gv = ([to_gpu(a) for a in arrs] for arrs in (params, m, v))
    for step in range(1, 6):
        grads = _params(rng, dtype)
        cpu.adam_update(params, grads, m, v, *_adam_args(cpu, step, **config))
        cuda.adam_update(gparams, [to_gpu(g) for g in grads], gm, gv, *_adam_args(cuda, step, **config))
        for got, want in zip(gparams + gm + gv, params + m + v):
            close(got, want, dtype, scale=5)


@gpu_test
def test_optimizer_mixed_dtypes_and_table_cache(cpu, cuda):
    """float32 and float64 parameters in one call (a launch per dtype); the same arrays reuse
    their cached pointer table."""
    rng = np.random.default_rng(10)
    dtypes = [np.float32, np.float64, np.float32, np.float64, np.float32]
    params = [rng.standard_normal(s).astype(d) for s, d in zip([(3,), (4, 5), (7,), (1,), (9, 2)], dtypes)]
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    bufs = [np.zeros_like(p) for p in params]
    gparams, ggrads, gbufs = ([to_gpu(a) for a in arrs] for arrs in (params, grads, bufs))
    cfg = dict(lr=0.1, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=1e-3)
    for step in range(3):
        cpu.sgd_update(params, grads, bufs, *_sgd_args(cpu, **cfg), first_step=step == 0)
        cuda.sgd_update(gparams, ggrads, gbufs, *_sgd_args(cuda, **cfg), first_step=step == 0)
        if step == 0:
            n_tables = len(cuda._tables)
        else:
            assert len(cuda._tables) == n_tables  # cache hit: nothing uploaded
    for gp, p in zip(gparams, params):
        close(gp, p, p.dtype)


@gpu_test
def test_captured_update_reads_the_scalars_of_each_replay(cpu, cuda):
    """Scalars written after the capture (a new learning rate, Adam's next bias correction)
    are the ones a replay uses: the graph holds their address, not their values."""
    rng = np.random.default_rng(12)
    params = _params(rng, np.float32)
    grads = _params(rng, np.float32)
    m, v = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    gparams, ggrads, gm, gv = ([to_gpu(a) for a in arrs] for arrs in (params, grads, m, v))
    config = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, decoupled=True)
    scalars, has_wd, decoupled = _adam_args(cuda, 1, **config)
    graph = cuda.capture_graph(lambda: cuda.adam_update(gparams, ggrads, gm, gv, scalars, has_wd, decoupled))
    for step in range(1, 4):
        config["lr"] = 1e-2 / step
        cuda.write_scalars(_adam_args(cpu, step, **config)[0].tolist(), scalars)
        graph.replay()
        cpu.adam_update(params, grads, m, v, *_adam_args(cpu, step, **config))
    for got, want in zip(gparams + gm + gv, params + m + v):
        close(got, want, np.float32, scale=5)


@gpu_test
def test_numpy_uploads_do_not_wait_for_the_gpu(cuda):
    """`asarray` of a NumPy array returns while earlier GPU work is still running (the copy
    is queued from pinned memory), takes its values at the call, and frees its pinned
    buffers once the copies are done."""
    big = cupy.ones((4096, 4096), dtype=np.float64)
    for _ in range(20):  # some tens of milliseconds of queued work
        big = big @ big / 4096
    host = np.random.default_rng(13).standard_normal((64, 3, 32, 32)).astype(np.float32)
    want = host.copy()
    dev = cuda.asarray(host)
    assert not cupy.cuda.get_current_stream().done, "the upload waited for the queued work"
    host[...] = 0  # the source may change right away
    np.testing.assert_array_equal(cupy.asnumpy(dev), want)
    strided = np.arange(24, dtype=np.int64).reshape(4, 6)[:, ::2]
    np.testing.assert_array_equal(cupy.asnumpy(cuda.asarray(strided, dtype=np.float32)), strided)
    scalar = cuda.asarray(np.array(2.5))
    assert scalar.shape == () and float(scalar) == 2.5
    cuda.synchronize()
    cuda.asarray(host)
    assert len(cuda._staging) <= 1


# ---------------------------------------------------------- generic on CuPy
@gpu_test
def test_backend_basics(cuda):
    assert cuda.name == "cuda" and cuda.device == backend.Device("cuda", 0)
    cuda.seed(0)
    assert cuda.randn((3, 4), np.float32).dtype == np.float32
    assert cuda.rand((5,), np.float64).shape == (5,)
    r = cupy.asnumpy(cuda.randint(0, 10, (100,)))
    assert r.dtype == np.int64 and r.min() >= 0 and r.max() < 10
    assert sorted(cupy.asnumpy(cuda.permutation(10)).tolist()) == list(range(10))
    a = cuda.asarray(np.arange(6.0).reshape(2, 3), dtype=np.float32)
    assert isinstance(a, cupy.ndarray) and a.dtype == np.float32
    np.testing.assert_array_equal(cuda.to_numpy(a), np.arange(6.0).reshape(2, 3))
    cuda.synchronize()
    # float16 is not covered by our kernels: it runs the generic code
    h = cuda.relu(cupy.asarray([-1.0, 2.0], dtype=np.float16))
    assert h.dtype == np.float16 and cupy.asnumpy(h).tolist() == [0.0, 2.0]


# --------------------------------------------- CUDA graphs and launch counts
def _graph_nodes(graph_handle):
    """Number of nodes of a captured cudaGraph_t (kernel launches, memsets, copies), or None."""
    import ctypes
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    count = ctypes.c_size_t(0)
    if lib.cuGraphGetNodes(ctypes.c_void_p(graph_handle), None, ctypes.byref(count)) != 0:
        return None
    return count.value


def _capture_and_replay(fn):
    """Run fn once (warm-up: compiles, fills the memory pool and the table cache), capture a
    second call in a CUDA graph (any host-device synchronisation inside would make the capture
    fail), replay the graph once. Returns (outputs of the captured call, graph node count)."""
    rt = cupy.cuda.runtime
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        fn()
        stream.synchronize()
        rt.streamBeginCapture(stream.ptr, rt.streamCaptureModeRelaxed)
        try:
            out = fn()
        finally:
            graph = rt.streamEndCapture(stream.ptr)
        nodes = _graph_nodes(graph)
        exe = rt.graphInstantiate(graph)
        rt.graphLaunch(exe, stream.ptr)
        stream.synchronize()
        rt.graphExecDestroy(exe)
        rt.graphDestroy(graph)
    return out, nodes


@gpu_test
def test_graph_capture_and_launch_counts(cpu, cuda):
    rng = np.random.default_rng(11)
    f = np.float32
    x4 = to_gpu(rng.standard_normal((2, 3, 9, 9)).astype(f))
    cols = cuda.im2col(x4, (3, 3), (1, 1), (1, 1), (1, 1))
    pooled, arg = cuda.max_pool2d(x4, (2, 2), (2, 2), (0, 0))
    x = to_gpu(rng.standard_normal((4, 7)).astype(f))
    target = to_gpu(np.array([0, 3, -100, 6], dtype=np.int64))
    loss, probs = cuda.softmax_cross_entropy(x, target)
    x3 = to_gpu(rng.standard_normal((4, 5, 6)).astype(f))
    w, b = to_gpu(np.ones(5, f)), to_gpu(np.zeros(5, f))
    _, mean, invstd = cuda.batch_norm_train(x3, w, b, 1e-5)
    running = (cupy.zeros(5, f), cupy.ones(5, f), 0.1)
    params = [to_gpu(rng.standard_normal(s).astype(f)) for s in [(3,), (4, 4), (5,)]]
    grads = [to_gpu(rng.standard_normal(p.shape).astype(f)) for p in params]
    bufs = [cupy.zeros_like(p) for p in params]
    ms, vs = [cupy.zeros_like(p) for p in params], [cupy.zeros_like(p) for p in params]
    scalar_grad = cupy.broadcast_to(cupy.asarray(0.25, dtype=f), (4,))  # no host copy inside the capture
    sgd_args = _sgd_args(cuda, lr=0.1, momentum=0.9, dampening=0.0, nesterov=True, weight_decay=1e-4)
    adam_args = _adam_args(cuda, 3, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, decoupled=True)

    calls = {
        "im2col": (lambda: cuda.im2col(x4, (3, 3), (1, 1), (1, 1), (1, 1)), 1),
        "col2im": (lambda: cuda.col2im(cols, x4.shape, (3, 3), (1, 1), (1, 1), (1, 1)), 1),
        "max_pool2d": (lambda: cuda.max_pool2d(x4, (2, 2), (2, 2), (0, 0)), 1),
        "max_pool2d_backward": (lambda: cuda.max_pool2d_backward(pooled, arg, x4.shape), 2),  # memset + kernel
        "avg_pool2d": (lambda: cuda.avg_pool2d(x4, (3, 3), (2, 2), (1, 1), False), 1),
        "avg_pool2d_backward": (lambda: cuda.avg_pool2d_backward(pooled, x4.shape, (2, 2), (2, 2), (0, 0)), 1),
        "relu": (lambda: cuda.relu(x), 1),
        "relu_backward": (lambda: cuda.relu_backward(x, x), 1),
        "leaky_relu": (lambda: cuda.leaky_relu(x, 0.1), 1),
        "leaky_relu_backward": (lambda: cuda.leaky_relu_backward(x, x, 0.1), 1),
        "sigmoid": (lambda: cuda.sigmoid(x), 1),
        "sigmoid_backward": (lambda: cuda.sigmoid_backward(x, x), 1),
        "tanh": (lambda: cuda.tanh(x), 1),
        "tanh_backward": (lambda: cuda.tanh_backward(x, x), 1),
        "gelu": (lambda: cuda.gelu(x), 1),
        "gelu_backward": (lambda: cuda.gelu_backward(x, x, "tanh"), 1),
        "softmax_cross_entropy": (lambda: cuda.softmax_cross_entropy(x, target, 0.1), 1),
        "reduce_class_loss": (lambda: cuda.reduce_class_loss(loss, target, -100, True), 1),
        "softmax_cross_entropy_backward": (lambda: cuda.softmax_cross_entropy_backward(
            scalar_grad, probs, target, 0.1), 1),
        # partial sums, finish (which also moves the running statistics), apply
        "batch_norm_train": (lambda: cuda.batch_norm_train(x3, w, b, 1e-5, "gelu", running), 3),
        "batch_norm_backward": (lambda: cuda.batch_norm_backward(x3, x3, w, b, mean, invstd, "gelu"), 3),
        "dropout_mask": (lambda: cuda.dropout_mask((4, 7), 0.5, np.dtype(f)), 1),
        "sgd_update": (lambda: cuda.sgd_update(params, grads, bufs, *sgd_args, first_step=False), 1),
        "adam_update": (lambda: cuda.adam_update(params, grads, ms, vs, *adam_args), 1),
    }
    counts = {}
    for name, (fn, expected) in calls.items():
        out, counts[name] = _capture_and_replay(fn)
        if name not in ("sgd_update", "adam_update", "dropout_mask"):  # the replay recomputes the same thing
            outs = out if isinstance(out, tuple) else (out,)
            refs = fn()
            refs = refs if isinstance(refs, tuple) else (refs,)
            for o, r in zip(outs, refs):
                np.testing.assert_array_equal(cupy.asnumpy(o), cupy.asnumpy(r))
        if counts[name] is not None:
            assert counts[name] == expected, (name, counts[name])
    print("\ngraph nodes (launches) per call:", counts)


@gpu_test
def test_each_override_is_one_kernel_of_ours(cuda, monkeypatch):
    """Contiguous inputs of a covered dtype: every override makes exactly one launch of our kernels."""
    launched = []
    real = cuda._launch
    monkeypatch.setattr(cuda, "_launch", lambda *a, **k: (launched.append(a[1]), real(*a, **k))[1])
    x = cupy.ones((3, 4), dtype=np.float64)
    for fn in (lambda: cuda.relu(x), lambda: cuda.tanh_backward(x, x), lambda: cuda.dropout_mask((5,), 0.2,
                                                                                                np.dtype("f8"))):
        launched.clear()
        fn()
        assert len(launched) == 1


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-rs"] + sys.argv[1:]))


# --------------------------------------------------------------- matmul
def _layout(rng, shape, dtype, transposed):
    """A random array of `shape`, stored C-contiguous or as the transpose of one."""
    if not transposed:
        return rng.standard_normal(shape).astype(dtype)
    swapped = shape[:-2] + (shape[-1], shape[-2])
    return np.swapaxes(rng.standard_normal(swapped).astype(dtype), -1, -2)


@gpu_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [((5, 7), (7, 3)), ((1, 9), (9, 1)), ((64, 150), (150, 33)),
                                    ((3, 4, 6), (3, 6, 5)), ((1, 4, 6), (3, 6, 5)), ((3, 4, 6), (6, 5)),
                                    ((4, 6), (2, 6, 5)), ((2, 1, 6), (2, 6, 1))])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_matmul_matches_numpy(cuda, dtype, shapes, ta, tb):
    rng = np.random.default_rng()
    a, b = (_layout(rng, s, dtype, t) for s, t in zip(shapes, (ta, tb)))
    out = cuda.matmul(to_gpu(a), to_gpu(b))
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert out.shape == ref.shape and out.dtype == dtype
    np.testing.assert_allclose(cupy.asnumpy(out), ref, **tol(dtype, scale=np.sqrt(shapes[0][-1])))


@gpu_test
def test_matmul_is_captured_in_a_graph(cuda):
    """Our cuBLAS handle works under stream capture, where CuPy's refuses."""
    rng = np.random.default_rng()
    a = to_gpu(rng.standard_normal((32, 48)).astype(np.float32))
    b = to_gpu(rng.standard_normal((48, 16)).astype(np.float32))
    graph = cuda.capture_graph(lambda: cuda.matmul(a, b))
    a[...] = to_gpu(rng.standard_normal((32, 48)).astype(np.float32))  # replays read the new values
    graph.replay()
    np.testing.assert_allclose(cupy.asnumpy(graph.outputs), cupy.asnumpy(a) @ cupy.asnumpy(b), rtol=1e-4, atol=1e-4)


# -------------------------------------------------------------- augmentation
def _augment_case(batch, shift_max, size=8):
    """uint8 images (20, 3, 32, 32), a batch's indices, per-channel scale and shift, and per-image
    shifts, flips and cutout corners (some partly outside the image)."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    std, mean = rng.uniform(0.2, 0.3, 3).astype(np.float32), rng.uniform(0.4, 0.5, 3).astype(np.float32)
    options = dict(translate=rng.integers(-shift_max, shift_max + 1, (batch, 2)).astype(np.int32),
                   flip=rng.random(batch) < 0.5, cutout=rng.integers(-size // 2, 32, (batch, 2)).astype(np.int32))
    return images, rng.integers(0, 20, batch), (1 / (255 * std)).astype(np.float32), (-mean / std).astype(np.float32), \
        options


@pytest.mark.parametrize("dtype", DTYPES + [np.float16, ml_dtypes.bfloat16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("options", ["none", "translate", "reflect", "all", "zeros-all"])
@gpu_test
def test_augment_images(cpu, cuda, options, dtype):
    images, index, scale, shift, draws = _augment_case(batch=9, shift_max=4)
    kwargs = {"none": {}, "translate": dict(translate=draws["translate"]),
              "reflect": dict(translate=draws["translate"], flip=draws["flip"], reflect=True),
              "all": dict(draws, reflect=True, cutout_size=8), "zeros-all": dict(draws, cutout_size=8)}[options]
    want = cpu.augment_images(images, index, scale, shift, dtype, **kwargs)
    on_gpu = {k: to_gpu(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    got = cuda.augment_images(to_gpu(images), to_gpu(index), to_gpu(scale), to_gpu(shift), dtype, **on_gpu)
    close(got, want, dtype, exact=True)


@gpu_test
def test_augment_images_of_a_batch_of_one(cpu, cuda):
    images, index, scale, shift, draws = _augment_case(batch=1, shift_max=31, size=40)
    want = cpu.augment_images(images, index, scale, shift, np.float32, **draws, reflect=True, cutout_size=3)
    got = cuda.augment_images(*(to_gpu(a) for a in (images, index, scale, shift)), np.float32,
                              **{k: to_gpu(v) for k, v in draws.items()}, reflect=True, cutout_size=3)
    close(got, want, np.float32, exact=True)
