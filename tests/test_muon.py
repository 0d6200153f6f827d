"""Muon against torch.optim.Muon (matrices), against a NumPy version of the same update written
here (convolution filters, which PyTorch's does not take), and with normalize_weights against
Keller Jordan's CIFAR-10 Muon written here in PyTorch."""
import numpy as np
import pytest
import torch

import mytensor as mt
from mytensor import nn, optim
from mytensor.backend import get_backend

COEFFICIENTS = (3.4445, -4.775, 2.0315)


def newton_schulz(g, steps=5, eps=1e-7):
    """The iteration in float64: X / |X|, then X <- a X + (b A + c A A) X with A = X X^T."""
    a, b, c = COEFFICIENTS
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / max(np.linalg.norm(x), eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if g.shape[0] > g.shape[1] else x


def test_iteration_evens_out_the_singular_values():
    g = np.random.default_rng(0).standard_normal((32, 48)) * np.linspace(0.01, 10, 48)  # a wide spread
    out = np.asarray(get_backend("cpu").newton_schulz(g.astype(np.float32), COEFFICIENTS, 5, 1e-7), np.float64)
    singular = np.linalg.svd(out, compute_uv=False)
    assert 0.5 < singular.min() and singular.max() < 1.3  # from a 1000-fold spread
    np.testing.assert_allclose(out, newton_schulz(g), atol=0.03)  # bfloat16 against float64


@pytest.mark.parametrize("shape", [(64, 216), (256, 576), (24, 40)])
def test_iteration_is_as_close_to_float64_as_torchs(shape):
    """Our bfloat16 iteration rounds each GEMM's result once, PyTorch's each product, scaling and sum:
    two roundings of the same precision, each as far from the float64 iteration as the other."""
    from torch.optim._muon import _zeropower_via_newtonschulz
    rng = np.random.default_rng()
    ours, theirs = [], []
    for _ in range(4):
        g = rng.standard_normal(shape).astype(np.float32)
        exact = newton_schulz(g.astype(np.float64), steps=3)
        out = np.asarray(get_backend("cpu").newton_schulz(g, COEFFICIENTS, 3, 1e-7), np.float64)
        ours.append(np.abs(out - exact).max())
        theirs.append(np.abs(_zeropower_via_newtonschulz(torch.tensor(g), COEFFICIENTS, 3, 1e-7).double().numpy()
                             - exact).max())
    assert np.mean(ours) < 1.3 * np.mean(theirs) and max(ours) < 0.02


@pytest.mark.parametrize("kwargs", [dict(lr=0.02), dict(lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.0),
                                    dict(lr=0.01, adjust_lr_fn="match_rms_adamw", ns_steps=3)])
def test_matches_torch(kwargs):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(8, 5), (4, 12), (16, 16)]]
    ours = [nn.Parameter(mt.tensor(a)) for a in arrays]
    theirs = [torch.nn.Parameter(torch.tensor(a)) for a in arrays]
    opt, topt = optim.Muon(ours, **kwargs), torch.optim.Muon(theirs, **kwargs)
    for i in range(4):
        for p, q in zip(ours, theirs):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad, q.grad = mt.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
        # 3% of a step for each step taken, twice the iteration's own error against float64 on such
        # small matrices: each of our GEMMs rounds once where PyTorch's bfloat16
        # products, scalings and sums round one by one (both as far from float64: the test above)
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=kwargs["lr"] * 0.03 * (i + 1))


def test_filters_are_orthogonalised_as_matrices():
    """A (out, in, kh, kw) weight steps by NS of its momentum seen as (out, in*kh*kw)."""
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal((6, 3, 3, 3))
    p = nn.Parameter(mt.tensor(w0.astype(np.float32)))
    opt = optim.Muon([p], lr=0.1, momentum=0.8, weight_decay=0.01)
    w, buf = w0.copy(), np.zeros_like(w0)
    for _ in range(3):
        g = rng.standard_normal(w0.shape)
        p.grad = mt.tensor(g.astype(np.float32))
        opt.step()
        buf += 0.2 * (g - buf)
        u = g + 0.8 * (buf - g)
        w = w * (1 - 0.1 * 0.01) - 0.1 * newton_schulz(u.reshape(6, -1)).reshape(w.shape)  # 6 rows < 27: ratio 1
        np.testing.assert_allclose(p.detach().numpy(), w, atol=0.1 * 0.05)


def airbench_muon_step(p, buf, g, lr, momentum, steps):
    """One step of airbench94_muon's Muon in float64 PyTorch: its momentum (buf = momentum buf + g,
    nesterov g + momentum buf), the weight rescaled to norm sqrt(rows), then the orthogonalised step."""
    buf.mul_(momentum).add_(g)
    u = g + momentum * buf
    p.mul_(len(p) ** 0.5 / p.norm())
    p.sub_(lr * torch.tensor(newton_schulz(u.reshape(len(u), -1).numpy(), steps)).view(p.shape))


def test_normalize_weights_matches_airbench_s_muon():
    """Ours on the gradient of the mean loss (batch size times smaller) steps as airbench's on the sum's:
    its momentum buffer is (1 - momentum) times airbench's, its update a positive multiple of
    airbench's, and the orthogonalisation forgets the scale."""
    rng = np.random.default_rng(4)
    shapes = [tuple(int(n) for n in rng.integers(2, 9, 2)) + (3, 3), (5, 12), (16, 4, 2, 2)]  # rows <= cols
    start = [rng.standard_normal(s) * rng.uniform(0.1, 3) for s in shapes]
    ours = [nn.Parameter(mt.tensor(w)) for w in start]
    theirs = [torch.tensor(w) for w in start]
    bufs = [torch.zeros_like(w) for w in theirs]
    opt = optim.Muon(ours, lr=0.24, momentum=0.6, nesterov=True, weight_decay=0, ns_steps=3, normalize_weights=True)
    for _ in range(4):
        for p, q, buf in zip(ours, theirs, bufs):
            g = rng.standard_normal(p.shape)
            p.grad = mt.tensor(g / 2000)
            airbench_muon_step(q, buf, torch.tensor(g), 0.24, 0.6, 3)
        opt.step()
        for p, q in zip(ours, theirs):  # a bfloat16 ulp of a step at most
            assert p.dtype == mt.float64
            np.testing.assert_allclose(p.detach().numpy(), q.numpy(), atol=0.24 * 0.02)


def test_normalize_weights_rescales_before_the_step():
    """With lr 0 a step only rescales: to norm sqrt(rows) exactly, the direction kept."""
    w = np.random.default_rng(5).standard_normal((6, 3, 3, 3)) * 7
    p = nn.Parameter(mt.tensor(w))
    p.grad = mt.ones(*w.shape, dtype=mt.float64)
    optim.Muon([p], lr=0.0, normalize_weights=True).step()
    np.testing.assert_allclose(p.detach().numpy(), w * np.sqrt(6) / np.linalg.norm(w), rtol=1e-12)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="2 or more dimensions"):
        optim.Muon([nn.Parameter(mt.zeros(4))])
    with pytest.raises(ValueError, match="not supported"):
        optim.Muon([nn.Parameter(mt.zeros(4, 4))], adjust_lr_fn="other")


def test_iteration_on_a_stack_is_the_iteration_on_each_matrix():
    """The GPU runs the matrices of one shape as one stack of batched GEMMs."""
    backend, bf16 = get_backend("cpu"), mt.bfloat16.np
    stack = np.random.default_rng().standard_normal((3, 12, 20)).astype(bf16) / 8
    together = backend.newton_schulz_steps(stack, COEFFICIENTS, 3)
    for x, y in zip(stack, together):
        np.testing.assert_allclose(np.asarray(backend.newton_schulz_steps(x, COEFFICIENTS, 3), np.float64),
                                   np.asarray(y, np.float64), atol=1e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not mt.cuda_is_available(), reason="no CUDA GPU (or CuPy not installed)")
@pytest.mark.parametrize("normalize_weights", [False, True])
@pytest.mark.parametrize("nesterov", [False, True])
def test_gpu_steps_match_the_cpu(normalize_weights, nesterov):
    """The fused kernels against the generic steps: a tall matrix, two filters of one shape (one
    stack of the iteration), a channels-last filter, and a step skipped by the overflow flag."""
    rng = np.random.default_rng()
    shapes = [(8, 5), (16, 4, 3, 3), (16, 4, 3, 3), (24, 8, 3, 3), (6, 40)]
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(a.shape).astype(np.float32) for a in arrays] for _ in range(3)]
    results = []
    for device in ("cpu", "cuda"):
        params = [nn.Parameter(mt.tensor(a, device=device)) for a in arrays]
        params[3] = nn.Parameter(params[3].detach().to(memory_format=mt.channels_last))
        opt = optim.Muon(params, lr=0.02, momentum=0.9, nesterov=nesterov, weight_decay=0.01, ns_steps=3,
                         normalize_weights=normalize_weights)
        for step in grads:
            for k, (p, g) in enumerate(zip(params, step)):
                p.grad = mt.tensor(g, device=device)
                p.grad = p.grad.to(memory_format=mt.channels_last) if k == 3 else p.grad
            opt.step()
        before = [p.detach().cpu().numpy() for p in params]
        opt.prepare_step()
        opt.apply_step(found_inf=mt.ones((), device=device)._data)  # an overflow: nothing moves
        for p, b in zip(params, before):
            np.testing.assert_array_equal(p.detach().cpu().numpy(), b)
        results.append(before)
    for a, b in zip(*results):  # 3% of a step for each step taken, as against PyTorch above
        np.testing.assert_allclose(a, b, atol=0.02 * 0.03 * 3)
