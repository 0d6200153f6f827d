"""Tensor creation, attributes, conversions, the seeded RNG and DLPack exchange."""
import numpy as np
import pytest
import torch

import mytensor as mt

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])


def same(got, want):
    assert got.shape == tuple(want.shape) and got.dtype.name == str(want.dtype).replace("torch.", "")
    np.testing.assert_array_equal(got.cpu().numpy(), want.numpy())


@pytest.mark.parametrize("device", DEVICES)
def test_creation_matches_torch(device):
    for fn in [lambda L: L.zeros(2, 3), lambda L: L.zeros((2, 3), dtype=L.int64), lambda L: L.ones([4]),
               lambda L: L.ones(2, 1, dtype=L.bool), lambda L: L.zeros(()), lambda L: L.full((2, 2), 7),
               lambda L: L.full((3,), 1.5, dtype=L.float64), lambda L: L.full([2], False),
               lambda L: L.arange(5), lambda L: L.arange(2, 11, 3), lambda L: L.arange(0, 1, 0.1),
               lambda L: L.arange(1, 0, -0.125, dtype=L.float64), lambda L: L.arange(5.0, dtype=L.int64),
               lambda L: L.eye(3), lambda L: L.eye(2, 4, dtype=L.int64), lambda L: L.linspace(0, 1, 7),
               lambda L: L.tensor([[1, 2], [3, 4]]), lambda L: L.tensor(3.5), lambda L: L.tensor([True, False]),
               lambda L: L.tensor([1, 2], dtype=L.float16), lambda L: L.zeros_like(L.tensor([1.5, 2])),
               lambda L: L.ones_like(L.tensor([1, 2]), dtype=L.float64), lambda L: L.full_like(L.zeros(2, 2), 3),
               lambda L: L.empty(2, 3).zero_(), lambda L: L.empty_like(L.ones(3)).fill_(2)]:
        got = fn(mt) if device == "cpu" else fn(mt).to(device)
        want = fn(torch)
        if want.dtype.is_floating_point:
            assert got.dtype.name == str(want.dtype).replace("torch.", "")
            np.testing.assert_allclose(got.cpu().numpy(), want.numpy(), rtol=1e-6)
        else:
            same(got, want)
    t = mt.zeros(2, device=device)
    assert t.device == mt.device(device) and mt.ones_like(t).device == t.device


def test_attributes():
    x = mt.randn(2, 3, 4)
    assert x.shape == (2, 3, 4) and x.ndim == 3 and x.dim() == 3 and x.numel() == 24 and len(x) == 2
    assert x.size() == (2, 3, 4) and x.size(-1) == 4 and x.dtype is mt.float32 and str(x.device) == "cpu"
    assert x.is_leaf and not x.requires_grad and x.grad is None and x.grad_fn is None and x.is_floating_point()
    assert x.is_contiguous() and not x.transpose(0, 2).is_contiguous() and x.stride() == (12, 4, 1)
    assert x.element_size() == 4 and x.T.shape == (4, 3, 2) and x.mT.shape == (2, 4, 3)
    y = x * 2
    assert y.grad_fn is None
    x.requires_grad_()
    y = x * 2
    assert y.requires_grad and not y.is_leaf and y.grad_fn.name == "MulBackward" and "grad_fn" in repr(y)
    assert "requires_grad=True" in repr(x) and repr(mt.tensor([1.0, 2.0])) == "tensor([1., 2.])"


def test_conversions():
    x = mt.tensor([[1.5, -2.0], [3.0, 4.25]])
    assert x.tolist() == [[1.5, -2.0], [3.0, 4.25]] and mt.tensor(7).item() == 7
    assert isinstance(mt.tensor(7).item(), int)
    assert x[0, 1].item() == -2.0 and float(x[1, 1]) == 4.25 and int(mt.tensor([3])) == 3 and bool(mt.tensor(True))
    assert isinstance(mt.tensor(2.5).item(), float) and mt.tensor([True]).item() is True
    assert [int(v) for v in mt.arange(3)] == [0, 1, 2] and np.asarray(x).dtype == np.float32
    assert list(range(5))[mt.tensor(2)] == 2
    with pytest.raises(ValueError, match="one-element"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)
    with pytest.raises(RuntimeError, match="detach"):
        mt.ones(2, requires_grad=True).numpy()


def test_numpy_shares_memory():
    a = np.arange(6.0).reshape(2, 3)
    t = mt.from_numpy(a)
    assert t.dtype is mt.float64 and t.shape == (2, 3)
    a[0, 0] = 100
    assert t[0, 0].item() == 100
    t.add_(1)
    assert a[0, 0] == 101 and np.shares_memory(t.numpy(), a)
    assert mt.from_numpy(a.T).tolist() == a.T.tolist()
    assert not np.shares_memory(mt.tensor(a).numpy(), a)  # tensor() copies, like torch.tensor
    with pytest.raises(TypeError, match="numpy.ndarray"):
        mt.from_numpy([1, 2])
    with pytest.raises(TypeError, match="unsupported dtype"):
        mt.from_numpy(np.zeros(2, dtype=np.complex64))


def test_dlpack_zero_copy():
    a = np.arange(4.0)
    t = mt.from_dlpack(a)
    a[0] = 9
    assert t[0].item() == 9
    back = np.from_dlpack(t)
    back[1] = 8
    assert t[1].item() == 8
    tt = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    m = mt.from_dlpack(tt)
    tt[0, 0] = 5
    assert m.shape == (2, 3) and m.dtype is mt.float32 and m[0, 0].item() == 5
    m2 = mt.from_dlpack(tt.t())  # strided
    assert m2.tolist() == tt.t().tolist()
    x = mt.ones(3, dtype=mt.int64)
    tx = torch.from_dlpack(x)
    tx[2] = 4
    assert x.tolist() == [1, 1, 4] and tx.dtype == torch.int64
    with pytest.raises(TypeError, match="__dlpack__"):
        mt.from_dlpack([1, 2])


@pytest.mark.parametrize("device", DEVICES)
def test_to_and_copies(device):
    x = mt.tensor([1.5, 2.5], requires_grad=True)
    assert x.to("cpu") is x and x.to(mt.float32) is x and x.to(x) is x
    y = x.to(device, mt.float64)
    assert y.dtype is mt.float64 and y.device == mt.device(device) and y.requires_grad
    assert x.to(dtype=mt.int64).tolist() == [1, 2] and not x.long().requires_grad
    (y * y).sum().backward()
    assert x.grad.dtype is mt.float32 and x.grad.device.type == "cpu" and x.grad.tolist() == [3.0, 5.0]
    z = x.to(mt.float32, copy=True)
    assert z is not x and not np.shares_memory(z.detach().numpy(), x.detach().numpy())
    assert mt.zeros(2, device=device).cpu().device.type == "cpu"
    assert x.detach().to(np.float16).dtype is mt.float16 and x.detach().type_as(mt.zeros(1, dtype=mt.int32)).dtype \
        is mt.int32


def test_to_takes_pytorch_forms_and_names_a_bad_one():
    """Tensor.to and Module.to share one parser (tensor_methods.parse_to)."""
    x = mt.ones(2)
    assert x.to("cpu", non_blocking=True) is x and x.to(None) is x and x.to(device="cpu", dtype="float64").dtype \
        is mt.float64
    net = mt.nn.Linear(2, 2)
    assert net.to("cpu", dtype=mt.float64).weight.dtype is mt.float64 and net.to(x).weight.dtype is mt.float32
    for target in (x, net):
        for bad in ((mt.float64, "cpu"), (5,), ("cpu", mt.float64, True)):
            with pytest.raises(TypeError, match="a device, a dtype"):
                target.to(*bad)
        with pytest.raises(ValueError, match="unknown device type"):
            target.to("gpu0")


@pytest.mark.parametrize("device", DEVICES)
def test_random_is_seeded(device):
    def draw():
        return [mt.rand(3, device=device), mt.randn(2, 2, device=device), mt.randint(0, 10, (5,), device=device),
                mt.randint(4, (3,), device=device), mt.randperm(6, device=device)]
    mt.manual_seed(123)
    first = draw()
    mt.manual_seed(123)
    second = draw()
    for a, b in zip(first, second):
        assert a.tolist() == b.tolist()
    mt.manual_seed(124)
    assert mt.rand(3, device=device).tolist() != first[0].tolist()
    r, n, i, i2, p = first
    assert r.dtype is mt.float32 and ((r.numpy() >= 0) & (r.numpy() < 1)).all() if device == "cpu" else True
    assert n.shape == (2, 2) and i.dtype is mt.int64 and i2.shape == (3,) and sorted(p.tolist()) == list(range(6))
    assert mt.randn(2, dtype=mt.float64).dtype is mt.float64 and mt.rand_like(r).shape == (3,)
    assert mt.randn_like(n, requires_grad=True).requires_grad
    big = mt.randn(20000).numpy()
    assert abs(big.mean()) < 0.05 and abs(big.std() - 1) < 0.05
    assert mt.randint(-3, 3, (1000,)).numpy().min() == -3
    with pytest.raises(TypeError, match="floating point"):
        mt.rand(2, dtype=mt.int64)


def test_requires_grad_rules():
    with pytest.raises(RuntimeError, match="floating point"):
        mt.tensor([1, 2], requires_grad=True)
    x = mt.ones(2).requires_grad_()
    y = x * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and np.shares_memory(d.numpy(), y.detach().numpy())
    assert not mt.zeros(2, requires_grad=True).long().requires_grad
    assert x.data.requires_grad is False


# in-place methods of the supported list that no op test reaches: same values as PyTorch's,
# and the tensor itself is returned
INPLACE = {
    "ceil_": lambda x, L: x.ceil_(), "floor_": lambda x, L: x.floor_(), "round_": lambda x, L: x.round_(),
    "trunc_": lambda x, L: x.trunc_(), "expm1_": lambda x, L: x.expm1_(), "log1p_": lambda x, L: x.abs_().log1p_(),
    "clip_": lambda x, L: x.clip_(-0.5, 0.7), "div_": lambda x, L: x.div_(2.5),
    "pow_": lambda x, L: x.abs_().pow_(1.5), "lerp_": lambda x, L: x.lerp_(L.ones_like(x), 0.3),
    "tril_": lambda x, L: x.tril_(1), "triu_": lambda x, L: x.triu_(-1), "detach_": lambda x, L: x.detach_(),
    "scatter_add_": lambda x, L: x.scatter_add_(1, L.zeros(x.shape, dtype=L.int64), L.ones_like(x)),
}


@pytest.mark.parametrize("name", sorted(INPLACE))
def test_inplace_methods_match_torch(name):
    rng = np.random.default_rng()
    data = rng.standard_normal((int(rng.integers(2, 6)), int(rng.integers(2, 7)))) * 3
    ours, theirs = mt.tensor(data.copy()), torch.tensor(data.copy())
    assert INPLACE[name](ours, mt) is ours and INPLACE[name](theirs, torch) is theirs
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-12)
    assert tuple(ours.reshape_as(mt.zeros(ours.numel())).shape) == (ours.numel(),)
