"""Behaviour of the names on docs/supported.md that no op, layer, optimizer or loader test
reaches otherwise, each against PyTorch where PyTorch can run here (and against PIL for
the image transforms, torchvision not being installed)."""
import numpy as np
import pytest
import torch
from PIL import Image

import mytensor as mt
import mytensor.vision  # noqa: F401  (mt.vision)

HAVE_GPU = mt.cuda.is_available()


def test_default_dtype_and_matmul_precision_as_in_pytorch():
    assert mt.get_default_dtype() is mt.float32 and torch.get_default_dtype() is torch.float32
    mt.set_default_dtype(mt.float64)
    try:
        assert mt.get_default_dtype() is mt.float64 and mt.tensor([1.5]).dtype is mt.float64
    finally:
        mt.set_default_dtype(mt.float32)
    assert mt.get_float32_matmul_precision() == torch.get_float32_matmul_precision() == "highest"
    assert mt.backends.cuda.matmul.allow_tf32 is False
    for value in ("high", "medium", "highest"):
        mt.set_float32_matmul_precision(value)
        assert mt.get_float32_matmul_precision() == value
        assert mt.backends.cuda.matmul.allow_tf32 is (value != "highest")
    mt.backends.cuda.matmul.allow_tf32 = True
    assert mt.get_float32_matmul_precision() == "high"
    mt.backends.cuda.matmul.allow_tf32 = False
    with pytest.raises(ValueError, match="highest"):
        mt.set_float32_matmul_precision("fast")


def test_index_put_forward_and_backward_against_pytorch():
    rng = np.random.default_rng()
    x, v = rng.standard_normal((5, 3)), rng.standard_normal((2, 3))
    idx = [int(i) for i in rng.choice(5, 2, replace=False)]
    a, b = mt.tensor(x, requires_grad=True), mt.tensor(v, requires_grad=True)
    ta, tb = torch.tensor(x, requires_grad=True), torch.tensor(v, requires_grad=True)
    out = mt.index_put(a, (mt.tensor(idx),), b)
    tout = torch.index_put(ta, (torch.tensor(idx),), tb)
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy())
    g = rng.standard_normal((5, 3))
    (out * mt.tensor(g)).sum().backward()
    (tout * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy())
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy())


def test_inference_mode_as_context_and_decorator():
    w = mt.randn(3, requires_grad=True)
    with mt.inference_mode():
        assert not (w * 2).requires_grad and not mt.is_grad_enabled()
    assert (w * 2).requires_grad

    @mt.inference_mode()
    def f(x):
        return x * 2
    assert not f(w).requires_grad
    with mt.inference_mode(False):
        assert (w * 2).requires_grad


def test_dropout2d_drops_whole_channels():
    x = mt.ones(64, 32, 4, 4)
    y = mt.nn.functional.dropout2d(x, p=0.25).numpy()
    per_channel = y.reshape(64, 32, 16)
    assert all(len(set(c)) == 1 for c in per_channel.reshape(-1, 16))  # a channel is kept or dropped whole
    kept = per_channel[:, :, 0] != 0
    assert 0.65 < kept.mean() < 0.85 and np.allclose(per_channel[kept], 1 / 0.75)
    assert np.array_equal(mt.nn.functional.dropout2d(x, p=0.25, training=False).numpy(), x.numpy())


def test_parameters_to_vector_and_back_against_pytorch():
    model, twin = mt.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    with torch.no_grad():
        for p, t in zip(model.parameters(), twin.parameters()):
            t.copy_(torch.tensor(p.detach().numpy()))
    vec = mt.nn.utils.parameters_to_vector(model.parameters())
    np.testing.assert_allclose(vec.detach().numpy(), torch.nn.utils.parameters_to_vector(twin.parameters())
                               .detach().numpy())
    new = np.random.default_rng().standard_normal(vec.shape[0]).astype(np.float32)
    mt.nn.utils.vector_to_parameters(mt.tensor(new), model.parameters())
    torch.nn.utils.vector_to_parameters(torch.tensor(new), twin.parameters())
    for p, t in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), t.detach().numpy())


def test_user_subclasses_of_optimizer_and_lr_scheduler_as_in_pytorch():
    """The pattern of PyTorch's docs: an optimizer written by subclassing Optimizer with its own
    step(), and a schedule by subclassing LRScheduler with get_lr()."""
    def classes(L):
        class SignSGD(L.optim.Optimizer):
            def __init__(self, params, lr=0.1):
                super().__init__(params, {"lr": lr})

            def step(self):
                with L.no_grad():
                    for group in self.param_groups:
                        for p in group["params"]:
                            if p.grad is not None:
                                p -= group["lr"] * p.grad.sign()

        class Halving(L.optim.lr_scheduler.LRScheduler):
            def get_lr(self):
                return [base * 0.5 ** self.last_epoch for base in self.base_lrs]
        return SignSGD, Halving

    rng = np.random.default_rng()
    w0, x = rng.standard_normal(5), rng.standard_normal(5)
    results = []
    for L in (mt, torch):
        SignSGD, Halving = classes(L)
        w = L.tensor(w0, requires_grad=True)
        opt = SignSGD([w], lr=0.1)
        sched = Halving(opt)
        assert isinstance(opt, L.optim.Optimizer)
        for _ in range(4):
            opt.zero_grad()
            ((w - L.tensor(x)) ** 2).sum().backward()
            opt.step()
            sched.step()
        results.append((w.detach().numpy().copy(), opt.param_groups[0]["lr"]))
    np.testing.assert_allclose(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


def test_concat_dataset_and_a_custom_sampler_against_pytorch():
    a, b = list(range(3)), list(range(10, 15))
    mine, theirs = mt.utils.data.ConcatDataset([a, b]), torch.utils.data.ConcatDataset([a, b])
    assert len(mine) == len(theirs) == 8
    assert [mine[i] for i in range(-8, 8)] == [theirs[i] for i in range(-8, 8)]
    with pytest.raises(IndexError):
        mine[8]

    def reverse_sampler(L):
        class Reverse(L.utils.data.Sampler):
            def __init__(self, n):
                self.n = n

            def __iter__(self):
                return iter(range(self.n - 1, -1, -1))

            def __len__(self):
                return self.n
        return Reverse

    data = np.arange(12, dtype=np.float32).reshape(6, 2)
    batches = []
    for L in (mt, torch):
        loader = L.utils.data.DataLoader(L.utils.data.TensorDataset(L.tensor(data)), batch_size=4,
                                         sampler=reverse_sampler(L)(6))
        batches.append([b[0].numpy().tolist() for b in loader])
    assert batches[0] == batches[1]


@pytest.mark.skipif(HAVE_GPU, reason="checks the answers of a machine without a GPU")
def test_cuda_and_accelerator_questions_without_a_gpu():
    """As PyTorch answers them on such a machine: nothing initialised, nothing reserved, and a clear
    error (not an import error) for what needs a device."""
    assert mt.cuda.is_initialized() is torch.cuda.is_initialized() is False
    assert mt.cuda.memory_reserved() == torch.cuda.memory_reserved() == 0
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        mt.cuda.get_device_properties(0)
    for L in (mt, torch):
        assert L.accelerator.device_count() == 0
        asks = [L.accelerator.current_device_index, lambda: L.accelerator.set_device_index(0)]
        if L is mt:  # PyTorch's older spellings (deprecated there, so not asked of it)
            asks += [mt.accelerator.current_device_idx, lambda: mt.accelerator.set_device_idx(0)]
        for ask in asks:
            with pytest.raises(RuntimeError, match="none is available"):
                ask()
    assert mt.accelerator.current_accelerator() is None and not mt.accelerator.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_GPU, reason="needs a CUDA GPU")
def test_cuda_device_properties_against_pytorch():
    mine, theirs = mt.cuda.get_device_properties(0), torch.cuda.get_device_properties(0)
    assert mine.name == theirs.name and (mine.major, mine.minor) == (theirs.major, theirs.minor)
    assert mine.multi_processor_count == theirs.multi_processor_count
    mt.zeros(1 << 20, device="cuda")
    assert mt.cuda.is_initialized() and mt.cuda.memory_reserved() >= 4 << 20
    assert mt.accelerator.current_device_index() == 0


def _image(rng, size=(9, 7)):
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_image_transforms_against_pil():
    T = mt.vision.transforms
    rng = np.random.default_rng()
    img = _image(rng)
    np.testing.assert_array_equal(np.asarray(T.Grayscale()(img)), np.asarray(img.convert("L")))
    gray3 = np.asarray(T.Grayscale(num_output_channels=3)(img))
    assert gray3.shape == (7, 9, 3) and (gray3 == np.asarray(img.convert("L"))[..., None]).all()
    padded = np.asarray(T.Pad((2, 1), fill=5)(img))
    want = np.pad(np.asarray(img), ((1, 1), (2, 2), (0, 0)), constant_values=5)
    np.testing.assert_array_equal(padded, want)
    np.testing.assert_array_equal(np.asarray(T.RandomVerticalFlip(p=1.0)(img)), np.asarray(img)[::-1])
    np.testing.assert_array_equal(np.asarray(T.RandomVerticalFlip(p=0.0)(img)), np.asarray(img))
    resized = T.Resize((5, 4))(img)  # (height, width), as torchvision
    assert resized.size == (4, 5)
    np.testing.assert_array_equal(np.asarray(resized), np.asarray(img.resize((4, 5), Image.BILINEAR)))
    t = T.ToTensor()(img)
    back = T.ToPILImage()(t)
    np.testing.assert_array_equal(np.asarray(back), np.asarray(img))
