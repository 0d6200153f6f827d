"""The three programs of docs/porting.md run on mytensor, and their losses agree with PyTorch's.

Each example is run twice from the same file: as written (on mytensor), and with its
imports turned back to `torch`/`torchvision`, which is the only difference between the
two sources (checked). To make the runs comparable number for number, both frameworks
draw from one shared NumPy stream wherever the programs use randomness (weight
initialisation, dropout masks, `randn`/`randint`/`multinomial`), data loaders keep the
dataset's order, and the datasets are cut to their first few hundred samples.
torchvision is not installed here: the reference run gets a stand-in for the few pieces
the programs use (MNIST, ToTensor, Normalize, Compose, save_image), built on PyTorch.
"""
import functools
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import mytensor as mt
import mytensor.vision  # noqa: F401  (mt.vision below)

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def source(name, framework):
    text = (EXAMPLES / f"{name}.py").read_text()
    if framework is torch:
        text = text.replace("mytensor.vision", "torchvision").replace("mytensor", "torch")
    return text


def run(name, framework, argv, capsys):
    ns = {"__name__": f"ported_{name}"}
    exec(compile(source(name, framework), str(EXAMPLES / f"{name}.py"), "exec"), ns)
    capsys.readouterr()
    ns["main"](argv)
    return capsys.readouterr().out


def numbers(text):
    return np.array([float(x) for x in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)])


def test_only_imports_differ():
    for path in EXAMPLES.glob("*.py"):
        body = path.read_text().split('"""', 2)[2]  # after the module docstring
        changed = [line for line in body.splitlines() if "mytensor" in line]
        assert changed and all(line.startswith(("import ", "from ")) for line in changed), (path.name, changed)


# ------------------------------------------------------------------ shared randomness
def share_randomness(monkeypatch, L, seed):
    rng = np.random.default_rng(seed)
    init, F, data = L.nn.init, L.nn.functional, L.utils.data

    def fill(t, values):
        with L.no_grad():
            t.copy_(L.tensor(np.asarray(values), dtype=t.dtype))
        return t

    def kaiming_uniform_(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
        shape = tuple(t.shape)
        receptive = math.prod(shape[2:])
        fan = shape[1] * receptive if mode == "fan_in" else shape[0] * receptive
        gain = math.sqrt(2.0 / (1 + a * a)) if nonlinearity == "leaky_relu" else math.sqrt(2.0)
        bound = gain * math.sqrt(3.0 / fan)
        return fill(t, rng.uniform(-bound, bound, shape))

    def dropout(input, p=0.5, training=True, inplace=False):
        if not training or p == 0:
            return input
        mask = (rng.random(tuple(input.shape)) >= p) / (1 - p)
        return input * L.tensor(mask, dtype=input.dtype)

    def randint(low, high=None, size=None, **kwargs):
        if size is None:
            low, high, size = 0, low, high
        return L.tensor(rng.integers(low, high, tuple(size)))

    def multinomial(probs, num_samples, replacement=False, **kwargs):
        p = probs.detach().cpu().numpy().astype(np.float64).reshape(-1, probs.shape[-1])
        draws = [rng.choice(p.shape[1], num_samples, replace=replacement, p=row / row.sum()) for row in p]
        return L.tensor(np.array(draws).reshape(tuple(probs.shape[:-1]) + (num_samples,)))

    real_loader = data.DataLoader

    def loader(dataset, **kwargs):
        kwargs.pop("shuffle", None)
        return real_loader(dataset, shuffle=False, **kwargs)

    monkeypatch.setattr(init, "kaiming_uniform_", kaiming_uniform_)
    monkeypatch.setattr(init, "uniform_", lambda t, a=0.0, b=1.0, generator=None: fill(t, rng.uniform(a, b,
                                                                                                  tuple(t.shape))))
    monkeypatch.setattr(init, "normal_", lambda t, mean=0.0, std=1.0, generator=None: fill(
        t, rng.normal(mean, std, tuple(t.shape))))
    monkeypatch.setattr(F, "dropout", dropout)
    monkeypatch.setattr(L, "randn_like", lambda t, **kw: L.tensor(rng.standard_normal(tuple(t.shape)), dtype=t.dtype))
    monkeypatch.setattr(L, "randn", lambda *size, **kw: L.tensor(rng.standard_normal(size), dtype=L.float32))
    monkeypatch.setattr(L, "randint", randint)
    monkeypatch.setattr(L, "multinomial", multinomial)
    monkeypatch.setattr(data, "DataLoader", loader)


def small_mnist(monkeypatch, datasets_module, subset, sizes=(96, 64)):
    real = datasets_module.MNIST

    def first_samples(root, train=True, **kwargs):
        return subset(real(root, train=train, **kwargs), list(range(sizes[0] if train else sizes[1])))
    monkeypatch.setattr(datasets_module, "MNIST", first_samples)


@functools.lru_cache(maxsize=2)
def mnist_arrays(train):
    raw = mt.data.MNIST(train=train)
    return raw.images[:, 0], raw.targets


@pytest.fixture
def torchvision_standin(monkeypatch):
    """torchvision's MNIST, ToTensor, Normalize, Compose and save_image, on PyTorch (as torchvision computes them)."""
    from PIL import Image
    tv = types.ModuleType("torchvision")
    datasets, transforms, utils = (types.ModuleType(f"torchvision.{n}") for n in ("datasets", "transforms", "utils"))

    class MNIST(torch.utils.data.Dataset):
        def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
            self.data, self.targets = mnist_arrays(train)
            self.transform = transform

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            img = Image.fromarray(self.data[i], mode="L")
            return (self.transform(img) if self.transform else img), int(self.targets[i])

    class ToTensor:
        def __call__(self, pic):
            return torch.from_numpy(np.array(pic, np.uint8)).unsqueeze(0).float().div(255)

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]

        def __call__(self, t):
            return (t - self.mean) / self.std

    class Compose:
        def __init__(self, ts):
            self.ts = ts

        def __call__(self, x):
            for t in self.ts:
                x = t(x)
            return x

    datasets.MNIST = MNIST
    transforms.ToTensor, transforms.Normalize, transforms.Compose = ToTensor, Normalize, Compose
    utils.save_image = lambda tensor, fp, **kw: Image.fromarray(np.zeros((2, 2), np.uint8)).save(fp)
    tv.datasets, tv.transforms, tv.utils = datasets, transforms, utils
    for name, mod in (("torchvision", tv), ("torchvision.datasets", datasets), ("torchvision.transforms", transforms),
                      ("torchvision.utils", utils)):
        monkeypatch.setitem(sys.modules, name, mod)
    return tv


def compare_runs(name, argv, capsys, monkeypatch, torchvision_standin=None, rtol=1e-4):
    outputs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: a thread pool only adds waiting, a lot of it on a busy machine
    try:
        for L in (mt, torch):
            with monkeypatch.context() as m:
                # the CPU for both, also on a GPU machine: the shared random stream makes CPU tensors
                m.setattr(L.cuda, "is_available", lambda: False)
                m.setattr(L.accelerator, "is_available", lambda: False)
                share_randomness(m, L, seed=0)
                if torchvision_standin is not None:
                    if L is mt:
                        small_mnist(m, mt.vision.datasets, mt.utils.data.Subset)
                    else:
                        small_mnist(m, torchvision_standin.datasets, torch.utils.data.Subset)
                outputs.append(run(name, L, argv, capsys))
    finally:
        torch.set_num_threads(threads)
    got, want = numbers(outputs[0]), numbers(outputs[1])
    assert len(got) == len(want) > 3, outputs
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6, err_msg=f"{name}:\n{outputs[0]}\n{outputs[1]}")
    return outputs[0]


def test_mnist_cnn_matches_pytorch(capsys, monkeypatch, torchvision_standin, tmp_path):
    out = compare_runs("mnist_cnn", ["--epochs", "2", "--batch-size", "32", "--test-batch-size", "64",
                                     "--log-interval", "1", "--no-accel", "--data", str(tmp_path)],
                       capsys, monkeypatch, torchvision_standin)
    assert "Test set: Average loss" in out


def test_vae_matches_pytorch(capsys, monkeypatch, torchvision_standin, tmp_path):
    out = compare_runs("vae", ["--epochs", "2", "--batch-size", "32", "--log-interval", "2", "--data", str(tmp_path),
                               "--results", str(tmp_path / "results")], capsys, monkeypatch, torchvision_standin)
    assert "Test set loss" in out
    assert (tmp_path / "results" / "sample_2.png").is_file()


def test_char_gpt_matches_pytorch(capsys, monkeypatch, tmp_path):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()[:6000]
    (tmp_path / "input.txt").write_text(text)
    compare_runs("char_gpt", ["--data", str(tmp_path / "input.txt"), "--batch-size", "8", "--block-size", "16",
                              "--max-iters", "20", "--eval-interval", "5", "--eval-iters", "2", "--n-embd", "32",
                              "--n-head", "4", "--n-layer", "2", "--dropout", "0.1", "--lr", "1e-3",
                              "--generate", "20"], capsys, monkeypatch)
