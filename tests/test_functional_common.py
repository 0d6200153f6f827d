"""Helpers shared by the `test_functional_*` files (this file holds no tests).

Every comparison runs our function and `torch.nn.functional`'s on the same fresh
random inputs, then backpropagates the same random upstream gradient through
both. Inputs are new on every run; the seed is printed (pytest shows it for a
failing test) and `MYTENSOR_TEST_SEED=<seed>` replays it.
"""
import os
import secrets

import numpy as np
import pytest
import torch

import mytensor as mt

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])
DTYPES = ["float64", "float32"]


@pytest.fixture(autouse=True)
def torch_single_thread():
    """PyTorch's OpenMP threads and NumPy's OpenBLAS threads fight over a small
    machine's cores (a tiny float64 conv can take 0.4 s); the reference needs no speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    seed = int(os.environ.get("MYTENSOR_TEST_SEED") or secrets.randbits(32))
    print(f"random seed {seed}: rerun with MYTENSOR_TEST_SEED={seed}")
    return np.random.default_rng(seed)


def rtol_for(dtype, device):
    """float64 to 1e-10 on the CPU; float32, and everything on the GPU (other
    summation orders, fused kernels), to 1e-5."""
    return 1e-10 if dtype == "float64" and device == "cpu" else 1e-5


def to_np(t):
    return t.detach().cpu().numpy()


def assert_close(actual, expected, dtype, device, what=""):
    """rtol per dtype; atol the same fraction of the largest expected magnitude
    (sums of many terms cancel, so small entries carry the big ones' rounding)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    rtol = rtol_for(dtype, device)
    finite = expected[np.isfinite(expected)]
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what, equal_nan=True)


class Arg:
    """An array given to both libraries. requires_grad: compare its gradient.
    noncontig: give ours a transposed view (non-contiguous), not a fresh array."""

    def __init__(self, array, requires_grad=None, noncontig=False):
        self.array = np.asarray(array)
        self.requires_grad = self.array.dtype.kind == "f" if requires_grad is None else requires_grad
        self.noncontig = noncontig and self.array.ndim >= 2

    def ours(self, device):
        if self.noncontig:
            # the same values, stored transposed: the view is not contiguous
            self.leaf = mt.tensor(np.ascontiguousarray(np.swapaxes(self.array, -1, -2)), device=device,
                                  requires_grad=self.requires_grad)
            view = self.leaf.transpose(-1, -2)
            assert not view.is_contiguous() or 1 in self.array.shape[-2:]
            return view
        self.leaf = mt.tensor(self.array, device=device, requires_grad=self.requires_grad)
        return self.leaf

    def our_grad(self):
        if self.leaf.grad is None:
            return None
        g = to_np(self.leaf.grad)
        return np.swapaxes(g, -1, -2) if self.noncontig else g

    def theirs(self):
        self.torch = torch.tensor(self.array, requires_grad=self.requires_grad)
        return self.torch


def compare(ours_fn, torch_fn, args, dtype, device, rng, kwargs=None, torch_kwargs=None, what=""):
    """Run both on `args` (Arg or anything else, passed as is) and compare the
    output, then the gradients of every Arg that requires grad. Returns our output."""
    kwargs = kwargs or {}
    torch_kwargs = kwargs if torch_kwargs is None else torch_kwargs
    ours_in = [a.ours(device) if isinstance(a, Arg) else a for a in args]
    theirs_in = [a.theirs() if isinstance(a, Arg) else a for a in args]
    out = ours_fn(*ours_in, **kwargs)
    expected = torch_fn(*theirs_in, **torch_kwargs)
    assert out.device == mt.device(device), f"{what}: output on {out.device}, expected {device}"
    assert str(out.dtype) == str(expected.dtype).replace("torch", "mytensor"), \
        f"{what}: dtype {out.dtype} != {expected.dtype}"
    assert_close(to_np(out), expected.detach().numpy(), dtype, device, f"{what}: forward")
    if not expected.requires_grad:
        return out
    g = rng.standard_normal(expected.shape).astype(dtype)
    out.backward(mt.tensor(g, device=device))
    expected.backward(torch.from_numpy(g))
    for i, a in enumerate(args):
        if isinstance(a, Arg) and a.requires_grad:
            theirs_grad = a.torch.grad
            ours_grad = a.our_grad()
            if theirs_grad is None:
                assert ours_grad is None or not np.any(ours_grad), f"{what}: unexpected gradient for argument {i}"
                continue
            assert ours_grad is not None, f"{what}: no gradient for argument {i}"
            assert_close(ours_grad, theirs_grad.numpy(), dtype, device, f"{what}: gradient of argument {i}")
    return out


def gradcheck(fn, *arrays, device, requires_grad=None, **kwargs):
    """mt.gradcheck of fn on float64 tensors made from `arrays` (numbers and
    non-float arrays are passed as they are)."""
    inputs = []
    for i, a in enumerate(arrays):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            needs = True if requires_grad is None else requires_grad[i]
            inputs.append(mt.tensor(a.astype(np.float64), device=device, requires_grad=needs))
        elif isinstance(a, np.ndarray):
            inputs.append(mt.tensor(a, device=device))
        else:
            inputs.append(a)
    assert mt.gradcheck(lambda *xs: fn(*xs, **kwargs), inputs)
