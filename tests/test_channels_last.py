"""Channels-last tensors: the memory-format API as in PyTorch, and the layers that keep the
layout (convolution by implicit GEMM on the GPU, batch norm, max pooling, ReLU, additions)
computing what the contiguous layout computes, forward and backward, against PyTorch."""
import numpy as np
import pytest
import torch

import mytensor as mt
from mytensor.backend import get_backend
import mytensor.nn as nn
import mytensor.nn.functional as F

GPU = mt.cuda_is_available()
gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not GPU, reason="no CUDA GPU (or CuPy not installed)")
SIXTEEN = {"bfloat16": (mt.bfloat16, torch.bfloat16, 1e-2), "float16": (mt.float16, torch.float16, 2e-3)}


def rel_err(got, ref):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert np.isfinite(got).all()
    return np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30)


def host(t):
    if isinstance(t, mt.Tensor):
        return t.detach().cpu().numpy().astype(np.float64)
    return t.detach().double().cpu().numpy()


# ------------------------------------------------------------------ the API
def test_memory_format_api_as_in_torch():
    x = np.random.default_rng().standard_normal((2, 3, 4, 5))
    ours, theirs = mt.tensor(x), torch.tensor(x)
    cl, tcl = ours.to(memory_format=mt.channels_last), theirs.to(memory_format=torch.channels_last)
    assert cl.stride() == tcl.stride() and cl.is_contiguous(memory_format=mt.channels_last)
    assert not cl.is_contiguous() and cl.contiguous().is_contiguous() and cl.contiguous().stride() == theirs.stride()
    assert cl.clone().stride() == tcl.clone().stride()  # preserve_format
    assert cl.contiguous(memory_format=mt.channels_last) is cl
    np.testing.assert_array_equal(cl.numpy(), x)
    assert not mt.ones(3).is_contiguous(memory_format=mt.channels_last)
    with pytest.raises(RuntimeError, match="channels_last needs a 4-D tensor"):
        mt.ones(2, 3).contiguous(memory_format=mt.channels_last)
    with pytest.raises(TypeError, match="memory_format must be"):
        ours.is_contiguous(memory_format="channels_last")
    conv = nn.Conv2d(3, 4, 3).to(memory_format=mt.channels_last)
    assert conv.weight.is_contiguous(memory_format=mt.channels_last) and conv.bias.is_contiguous()
    assert repr(mt.channels_last) == "mytensor.channels_last" and isinstance(mt.channels_last, mt.memory_format)


@pytest.mark.parametrize("name", ["zeros_like", "ones_like", "empty_like", "rand_like", "randn_like", "full_like"])
def test_like_constructors_preserve_the_layout_as_in_torch(name):
    x = np.random.default_rng().standard_normal((2, 3, 4, 5)).astype(np.float32)
    ours = mt.tensor(x).to(memory_format=mt.channels_last)
    theirs = torch.tensor(x).to(memory_format=torch.channels_last)
    args = (2.5,) if name == "full_like" else ()
    for fmt, tfmt in ((None, None), (mt.contiguous_format, torch.contiguous_format),
                      (mt.channels_last, torch.channels_last)):
        kwargs, tkwargs = ({}, {}) if fmt is None else ({"memory_format": fmt}, {"memory_format": tfmt})
        made, expected = getattr(mt, name)(ours, *args, **kwargs), getattr(torch, name)(theirs, *args, **tkwargs)
        assert made.stride() == expected.stride() and made.shape == expected.shape and made.dtype == ours.dtype
        plain = getattr(mt, name)(mt.tensor(x), *args, **kwargs)
        assert plain.stride() == getattr(torch, name)(torch.tensor(x), *args, **tkwargs).stride()
    with pytest.raises(RuntimeError, match="channels_last needs a 4-D tensor"):
        getattr(mt, name)(mt.ones(2, 3), *args, memory_format=mt.channels_last)


def test_optimizer_state_lies_as_its_parameter_also_when_loaded():
    """Momentum buffers of a channels-last filter are channels-last, made or loaded, so the fused
    update kernels take them with it."""
    conv = nn.Conv2d(3, 4, 3).to(memory_format=mt.channels_last)
    opt = mt.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9)
    conv(mt.randn(2, 3, 5, 5)).sum().backward()
    opt.step()
    assert opt.state[conv.weight]["momentum_buffer"].is_contiguous(memory_format=mt.channels_last)
    again = mt.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9)
    again.load_state_dict(opt.state_dict())
    buf = again.state[conv.weight]["momentum_buffer"]
    assert buf.is_contiguous(memory_format=mt.channels_last)
    assert again.state[conv.bias]["momentum_buffer"].is_contiguous()
    np.testing.assert_array_equal(buf.numpy(), opt.state[conv.weight]["momentum_buffer"].numpy())


def test_channels_last_gradients_flow_back_in_float64_on_cpu():
    """conv -> BN -> ReLU -> max-pool -> residual-style add on a channels-last input: values and
    gradients equal PyTorch's (float64), whatever the layouts inside."""
    rng = np.random.default_rng()
    n, c, h, w, o = int(rng.integers(1, 4)), 3, int(rng.integers(5, 9)), int(rng.integers(5, 9)), 4
    x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, 3, 3))
    grads = []
    for lib, fmt in ((mt, mt.channels_last), (torch, torch.channels_last)):
        xx = lib.tensor(x).to(memory_format=fmt).requires_grad_()
        ww = lib.tensor(wt).to(memory_format=fmt).requires_grad_()
        fn = F if lib is mt else torch.nn.functional
        y = fn.relu(fn.batch_norm(fn.conv2d(xx, ww, padding=1), None, None, training=True))
        y = fn.max_pool2d(y + y * y, 2)
        (y * lib.tensor(np.arange(y.numel()).reshape(y.shape) % 5)).sum().backward()
        grads.append((y, xx.grad, ww.grad))
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(host(ours), host(theirs), rtol=1e-9, atol=1e-9)
    assert grads[0][1].is_contiguous(memory_format=mt.channels_last)  # a leaf's .grad keeps the leaf's layout


# ------------------------------------------------------------------ on the GPU
CONV_CASES = [  # (N, C, H, W), O, kernel, stride, padding, dilation
    ((2, 8, 5, 7), 8, 3, 1, 1, 1),
    ((3, 16, 9, 9), 24, 3, 2, 1, 1),
    ((1, 64, 11, 6), 136, 1, 1, 0, 1),
    ((2, 40, 8, 8), 8, 5, 1, 2, 1),
    ((2, 24, 13, 10), 16, 3, 1, 2, 2),
    ((5, 128, 6, 6), 256, 3, 1, 1, 1),
    ((3, 72, 10, 11), 328, 3, 1, 1, 1),  # N tiles of 256 with a ragged last one
    ((2, 136, 7, 9), 120, 3, 1, 1, 1),  # a long reduction (warp-specialized on Hopper), ragged tiles
    ((4, 32, 7, 9), 48, (3, 1), (2, 1), (0, 1), 1),
    ((4, 3, 10, 9), 16, 3, 1, 1, 1),  # an RGB image: zero channels added up to 8
    ((2, 12, 9, 8), 8, 3, 2, 1, 1),
    ((2, 16, 8, 8), 32, 1, 2, 0, 1),  # a ResNet shortcut: 3 of 4 input pixels get no gradient
    ((2, 16, 10, 11), 16, 3, 3, 1, 1),  # stride 3: 9 sub-convolutions for the input gradient
    ((3, 24, 9, 12), 16, 5, 2, 2, 1),
    # multiples of 64 channels, which the tma forward takes
    ((8, 64, 16, 16), 64, 3, 1, 1, 1),
    ((2, 128, 20, 17), 200, 3, 1, 1, 1),  # a ragged last pixel tile and N tile
    ((4, 64, 18, 15), 128, 3, 2, 1, 1),
    ((4, 128, 16, 16), 256, 1, 2, 0, 1),
    ((3, 64, 20, 20), 64, 3, 1, 2, 2),
    ((2, 64, 24, 24), 72, 5, 1, 2, 1),
    ((2, 192, 16, 16), 320, 3, 1, 1, 1),  # three channel blocks a tap
]


# the kernels of each family, as ConvKernel fields: (forward and input gradient, weight gradient)
# (the weight gradient of the tma_pingpong family is tma's)
KERNELS = {"mma": ([(64,), (128,)], [(128, 4), (128, 2)])} | {
    family: ([(64,), (128,), (256,)], [(128, 4), (256, 1), (256, 2)]) for family in ("wgmma", "wgmma_specialized")} | {
    "tma": ([(64, 1), (64, 2), (128, 1), (128, 2), (256, 1)], [(128, 1), (256, 1), (128, 2)]),
    "tma_pingpong": ([(64, 1), (128, 1)], [(256, 1)])}


@gpu
@needs_gpu
@pytest.mark.parametrize("dtype", sorted(SIXTEEN))
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-o{c[1]}-k{c[2]}-s{c[3]}")
@pytest.mark.parametrize("input_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("family", sorted(KERNELS))
def test_conv2d_implicit_gemm_against_float64(dtype, case, input_format, family, monkeypatch):
    """The implicit-GEMM convolution (16-bit operands, float32 accumulation) and its input,
    weight and bias gradients, against PyTorch in float64 on the same rounded values, by each
    kernel of a family (the wgmma families on Hopper only); the output and the input gradient
    come out channels-last."""
    from mytensor.backend.cuda.implicit_gemm import ConvKernel
    backend = get_backend("cuda")
    if family != "mma" and backend.compute_capability != (9, 0):
        pytest.skip("wgmma needs a Hopper GPU (sm_90)")
    ours_dt, torch_dt, tol = SIXTEEN[dtype]
    shape, o, k, stride, padding, dilation = case
    rng = np.random.default_rng()
    k = k if isinstance(k, tuple) else (k, k)
    x = torch.tensor(rng.standard_normal(shape)).to(torch_dt).double()
    wt = torch.tensor(rng.standard_normal((o, shape[1]) + k) / np.sqrt(shape[1] * k[0] * k[1])).to(torch_dt).double()
    b = torch.tensor(rng.standard_normal(o)).to(torch_dt).double()
    xr, wr, br = (t.clone().requires_grad_() for t in (x, wt, b))
    ref = torch.nn.functional.conv2d(xr, wr, br, stride, padding, dilation)
    g = torch.tensor(rng.standard_normal(ref.shape)).to(torch_dt).double()
    ref.backward(g)

    fprops, wgrads = KERNELS[family]
    for i, fprop in enumerate(fprops):
        wgrad = ConvKernel("tma" if family.startswith("tma") else family, *wgrads[i % len(wgrads)])
        monkeypatch.setattr(backend, "conv_kernels", {"fprop": ConvKernel(family, *fprop), "wgrad": wgrad})
        xs = mt.tensor(x.numpy(), device="cuda", dtype=ours_dt)
        if input_format == "channels_last":
            xs = xs.to(memory_format=mt.channels_last)
        xs.requires_grad_()
        ws = mt.tensor(wt.numpy(), device="cuda", dtype=ours_dt, requires_grad=True)
        bs = mt.tensor(b.numpy(), device="cuda", dtype=ours_dt, requires_grad=True)
        y = F.conv2d(xs, ws, bs, stride, padding, dilation)
        assert y.dtype is ours_dt and y.is_contiguous(memory_format=mt.channels_last)
        y.backward(mt.tensor(g.numpy(), device="cuda", dtype=ours_dt))
        where = f"{backend.conv_kernels}"
        assert rel_err(host(y), ref.detach().numpy()) < tol, where
        assert rel_err(host(xs.grad), xr.grad.numpy()) < tol, where
        assert rel_err(host(ws.grad), wr.grad.numpy()) < tol and ws.grad.is_contiguous(), where
        assert rel_err(host(bs.grad), br.grad.numpy()) < tol, where


@gpu
@needs_gpu
@pytest.mark.parametrize("o, stride", [(128, 1), (72, 1), (64, 2)])
def test_tma_kernels_agree_on_large_batches(o, stride, monkeypatch):
    """The TMA kernels where each block takes many tiles (the persistent forward's warpgroups
    alternating over the stages many times; the weight gradient's splits of many pixel tiles),
    against the wgmma kernels on the same operands."""
    from mytensor.backend.cuda.implicit_gemm import ConvKernel
    backend = get_backend("cuda")
    if backend.compute_capability != (9, 0):
        pytest.skip("TMA and wgmma need a Hopper GPU (sm_90)")
    rng = backend.cupy.random.default_rng()
    x = rng.standard_normal((70 * stride ** 2, 32, 32, 64), dtype=np.float32).astype(mt.bfloat16.np)
    w = (rng.standard_normal((o, 3, 3, 64), dtype=np.float32) / 24).astype(mt.bfloat16.np)
    args = (x, w, None, (stride, stride), (1, 1), (1, 1))
    monkeypatch.setattr(backend, "conv_kernels", {"fprop": ConvKernel("wgmma", 128), "wgrad": ConvKernel("wgmma", 256)})
    ref = backend.conv2d_nhwc(*args)
    ref_dw = backend.conv2d_nhwc_weight_grad(x, ref, (3, 3), *args[3:], True).astype(np.float32)
    ref = ref.astype(np.float32)
    for n_tile in (64, 128):
        monkeypatch.setattr(backend, "conv_kernels", {"fprop": ConvKernel("tma_pingpong", n_tile, 1),
                                                      "wgrad": ConvKernel("tma", 2 * n_tile, 1)})
        y = backend.conv2d_nhwc(*args)
        got_dw = backend.conv2d_nhwc_weight_grad(x, y, (3, 3), *args[3:], True).astype(np.float32)
        assert float(abs(y.astype(np.float32) - ref).max()) <= 1e-2 * float(abs(ref).max()), n_tile
        assert float(abs(got_dw - ref_dw).max()) <= 1e-2 * float(abs(ref_dw).max()), n_tile


@gpu
@needs_gpu
def test_conv_benchmark_mode_keeps_the_fastest_kernel_per_shape(monkeypatch):
    """With `backends.cudnn.benchmark`, the first call of a shape times its candidates and records
    one of them for that shape, which later calls reuse; the result is the same convolution; under
    a graph capture no timing happens (nothing new is recorded)."""
    backend = get_backend("cuda")
    monkeypatch.setattr(backend, "_conv_choices", {})
    rng = np.random.default_rng()
    x = mt.tensor(rng.standard_normal((4, 64, 9, 9)), device="cuda", dtype=mt.bfloat16)
    x = x.to(memory_format=mt.channels_last).requires_grad_()
    w = mt.tensor(rng.standard_normal((256, 64, 3, 3)) / 24, device="cuda", dtype=mt.bfloat16, requires_grad=True)
    plain = F.conv2d(x, w, padding=1)
    with mt.backends.cudnn.flags(enabled=True, benchmark=True):
        tuned = F.conv2d(x, w, padding=1)
        tuned.sum().backward()
        passes = sorted(key[0] for key in backend._conv_choices)
        assert passes == ["fprop", "fprop", "wgrad"]  # the forward, the input gradient, the weight gradient
        fprop = next(k for key, k in backend._conv_choices.items() if key[0] == "fprop")
        assert fprop in backend._fprop_candidates(256, 9 * 64, True)  # 64 channels: the tma kernels too
        before = dict(backend._conv_choices)
        assert rel_err(host(F.conv2d(x, w, padding=1)), host(plain)) < 1e-2
        assert backend._conv_choices == before
        x2 = mt.tensor(rng.standard_normal((2, 64, 5, 5)), device="cuda", dtype=mt.bfloat16)
        x2 = x2.to(memory_format=mt.channels_last)
        with mt.no_grad():
            backend.capture_graph(lambda: F.conv2d(x2, w, padding=1))  # a new shape, the rule's kernel
        assert backend._conv_choices == before
    assert rel_err(host(tuned), host(plain)) < 1e-2


@gpu
@needs_gpu
@pytest.mark.parametrize("dtype", sorted(SIXTEEN))
def test_layers_keep_channels_last_on_the_gpu(dtype):
    """Batch norm, ReLU, max-pool and the residual add on channels-last 16-bit tensors: the same
    values as on contiguous ones, and the output stays channels-last (no layout copies)."""
    ours_dt, _, tol = SIXTEEN[dtype]
    rng = np.random.default_rng()
    for shape in [(4, 64, 8, 8), (3, 24, 5, 7), (2, 512, 4, 4), (2, 12, 3, 3)]:
        x = mt.tensor(rng.standard_normal(shape) * 2 + 1, device="cuda", dtype=ours_dt)
        outs = []
        for t in (x, x.to(memory_format=mt.channels_last)):
            t = t.detach().requires_grad_()
            bn = F.batch_norm(t, None, None, mt.ones(shape[1], device="cuda"), mt.zeros(shape[1], device="cuda"),
                              training=True)
            r = F.relu(bn) + t
            y, z = F.max_pool2d(r, 2), F.max_pool2d(r, 3, 2, 1)  # windows apart, and overlapping
            (y.float().sum() + (z.float() * 0.5).sum()).backward()
            outs.append((bn, y, z, t.grad))
        for (a, b) in zip(*outs):
            assert rel_err(host(b), host(a)) < tol
        if shape[1] % 8 == 0:
            assert all(t.is_contiguous(memory_format=mt.channels_last) for t in outs[1])


@gpu
@needs_gpu
def test_conv2d_batches_past_one_launch_run_in_slices():
    """8200 images of 32x32 are 65600 tiles of 128 output pixels, past the 65535 rows of a grid: the
    forward and the input gradient (a convolution too) run in slices of the batch; the weight
    gradient, whose grid is over the filter, in one launch. Against the two halves, each of which
    fits one launch."""
    rng = np.random.default_rng()
    x = mt.tensor(rng.standard_normal((8200, 8, 32, 32)), dtype=mt.bfloat16, device="cuda")
    x = x.to(memory_format=mt.channels_last).requires_grad_()
    conv = nn.Conv2d(8, 16, 3, padding=1).to("cuda").to(memory_format=mt.channels_last)

    def run(images):
        with mt.autocast("cuda", dtype=mt.bfloat16):
            out = conv(images)
        out.float().square().sum().backward()
        return out
    y = run(x)
    whole = conv.weight.grad.float().cpu().numpy()
    conv.weight.grad = None
    for half in (slice(0, 4100), slice(4100, 8200)):
        xh = x[half].detach().requires_grad_()
        yh = run(xh)
        for got, want in ((y[half], yh), (x.grad[half], xh.grad)):
            got, want = got.float().cpu().numpy(), want.float().cpu().numpy()
            assert np.linalg.norm(got - want) <= 1e-2 * np.linalg.norm(want)
    halves = conv.weight.grad.float().cpu().numpy()
    assert np.linalg.norm(whole - halves) <= 1e-2 * np.linalg.norm(halves)


@gpu
@needs_gpu
def test_sgd_steps_channels_last_parameters_as_contiguous_ones():
    """The flat update kernels pair a channels-last parameter with a gradient of its layout."""
    rng = np.random.default_rng()
    w0 = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    results = []
    for fmt in (mt.contiguous_format, mt.channels_last):
        conv = nn.Conv2d(8, 16, 3, bias=False).to("cuda")
        conv.weight.data = mt.tensor(w0, device="cuda")
        conv.to(memory_format=fmt)
        opt = mt.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
        x = mt.tensor(rng.standard_normal((2, 8, 6, 6)), device="cuda", dtype=mt.float32) if not results \
            else results[0][1]
        for _ in range(3):
            opt.zero_grad()
            with mt.autocast("cuda", dtype=mt.bfloat16):
                loss = (conv(x.to(memory_format=fmt)).float() ** 2).mean()
            loss.backward()
            opt.step()
        results.append((conv.weight.detach().cpu().numpy(), x))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
