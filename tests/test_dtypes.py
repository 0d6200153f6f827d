"""Type promotion against PyTorch: result dtype (and values) for every pair of
dtypes, as dimensioned tensors, 0-d tensors and Python scalars."""
import itertools

import numpy as np
import pytest
import torch

import mytensor as mt

DTYPES = ["bool", "uint8", "int32", "int64", "float16", "bfloat16", "float32", "float64"]
SCALARS = [True, 3, -2, 2.5]
OPS = {
    "add": lambda L, a, b: L.add(a, b),
    "sub": lambda L, a, b: a - b,
    "mul": lambda L, a, b: a * b,
    "div": lambda L, a, b: a / b,
    "maximum": lambda L, a, b: L.maximum(a, b),
    "where": lambda L, a, b: L.where(L.tensor([True, False]), a, b),
    "eq": lambda L, a, b: a == b,
    "lt": lambda L, a, b: a < b,
}


def make(L, dtype, zero_dim):
    values = 1 if zero_dim else [1, 2]
    return L.tensor(values, dtype=getattr(L, dtype) if L is torch else dtype)


def same_outcome(fn, lenient=False):
    """Run fn on both libraries: both fail, or both give the same dtype and values
    (`lenient`: mytensor may accept what PyTorch refuses)."""
    try:
        want = fn(torch)
    except (RuntimeError, TypeError):
        if not lenient:
            with pytest.raises((RuntimeError, TypeError, ValueError)):
                fn(mt)
        return
    got = fn(mt)
    assert got.dtype.name == str(want.dtype).replace("torch.", ""), f"{got.dtype} != {want.dtype}"
    np.testing.assert_allclose(got.numpy().astype(np.float64), want.to(torch.float64).numpy(), rtol=1e-3)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kinds", ["tensor-tensor", "tensor-0d", "0d-tensor", "0d-0d"])
def test_tensor_pairs(op, kinds):
    ka, kb = kinds.split("-")
    for da, db in itertools.product(DTYPES, DTYPES):
        same_outcome(lambda L: OPS[op](L, make(L, da, ka == "0d"), make(L, db, kb == "0d")))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("zero_dim", [False, True], ids=["tensor", "0d"])
def test_tensor_scalar(op, zero_dim):
    lenient = op == "maximum"  # mytensor also takes a number here
    for d, s in itertools.product(DTYPES, SCALARS):
        same_outcome(lambda L: OPS[op](L, make(L, d, zero_dim), s), lenient)
        same_outcome(lambda L: OPS[op](L, s, make(L, d, zero_dim)), lenient)


@pytest.mark.parametrize("da,db", list(itertools.product(DTYPES, DTYPES)))
def test_cat_and_matmul_promote(da, db):
    same_outcome(lambda L: L.cat([make(L, da, False), make(L, db, False)]))
    if "float" in da and da == db:
        same_outcome(lambda L: make(L, da, False) @ make(L, db, False))


@pytest.mark.parametrize("d", DTYPES)
def test_unary_and_reduction_dtypes(d):
    for fn in [lambda L, x: L.exp(x), lambda L, x: x.sqrt(), lambda L, x: x.sum(), lambda L, x: x.prod(),
               lambda L, x: x.cumsum(0), lambda L, x: x.max(), lambda L, x: x.argmax(), lambda L, x: x.abs(),
               lambda L, x: -x, lambda L, x: x.mean(), lambda L, x: x.clamp(min=0.5), lambda L, x: x.clamp(0, 1),
               lambda L, x: L.relu(x), lambda L, x: L.sigmoid(x), lambda L, x: x.logsumexp(0), lambda L, x: x // 2,
               lambda L, x: x.float(), lambda L, x: x.double(), lambda L, x: x.long(), lambda L, x: x.bool(),
               lambda L, x: x.half(), lambda L, x: x.to(L.float64), lambda L, x: x.var()]:
        same_outcome(lambda L: fn(L, make(L, d, False)), lenient=True)  # argmax of bools: mytensor answers


def test_python_data_inference():
    for data in [1, 2.5, True, [1, 2], [1.0, 2], [True, False], [[1], [2]], [], np.array([1, 2], dtype=np.int32),
                 np.array([1.5], dtype=np.float64), np.array([1], dtype=np.uint8), np.float64(2.0)]:
        assert mt.tensor(data).dtype.name == str(torch.tensor(data).dtype).replace("torch.", ""), data
    for fill in [1, 1.5, True]:
        assert mt.full((2,), fill).dtype.name == str(torch.full((2,), fill).dtype).replace("torch.", "")
    for args in [(5,), (1, 5), (0, 1, 0.25), (0.5, 3), (5, 0, -1), (0, 1, 0.1), (-1, 2.5, 0.3)]:
        a, t = mt.arange(*args), torch.arange(*args)
        assert a.dtype.name == str(t.dtype).replace("torch.", "")
        np.testing.assert_array_equal(a.numpy(), t.numpy())


def test_default_dtype():
    try:
        mt.set_default_dtype(mt.float64)
        assert mt.tensor([1.5]).dtype is mt.float64 and mt.zeros(2).dtype is mt.float64
        assert (mt.tensor([1, 2]) * 0.5).dtype is mt.float64 and mt.randn(2).dtype is mt.float64
    finally:
        mt.set_default_dtype(mt.float32)
    assert mt.tensor([1.5]).dtype is mt.float32
    with pytest.raises(TypeError, match="floating point"):
        mt.set_default_dtype(mt.int64)


def test_dtype_names_and_aliases():
    assert mt.float is mt.float32 and mt.double is mt.float64 and mt.half is mt.float16 and mt.long is mt.int64
    assert mt.float32.is_floating_point and not mt.int64.is_floating_point and mt.float16.itemsize == 2
    assert repr(mt.float32) == "mytensor.float32"
    x = mt.zeros(2)
    for spec in ["float64", mt.float64, np.float64, "double"]:
        assert x.to(spec).dtype is mt.float64
    with pytest.raises(TypeError, match="unsupported dtype"):
        mt.zeros(2, dtype="complex64")
