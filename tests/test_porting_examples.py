"""The five programs of docs/porting.md run on mytensor, and their losses agree with PyTorch's.

Each example is run twice from the same file: as written (on mytensor), and with its
imports turned back to `torch`/`torchvision`, which is the only difference between the
two sources (checked). To make the runs comparable number for number, both frameworks
draw from one shared NumPy stream wherever the programs use randomness (weight
initialisation, dropout masks, `randn`/`randint`/`multinomial`), data loaders keep the
dataset's order, and the datasets are cut to their first few hundred samples.
torchvision is not installed here: the reference run gets a stand-in for the few pieces
the programs use (MNIST, CIFAR10, ToTensor, Normalize, Compose, RandomCrop,
RandomHorizontalFlip, save_image), built on PyTorch; the CIFAR-10 programs read a tiny
CIFAR-10 the test writes in the original pickle format.
"""
import functools
import math
import pickle
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
    """The decimal numbers printed, percentages left out (`counts` has what they come from)."""
    return np.array([float(x) for x in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", re.sub(r"\d+\.\d+%", "", text))])


def counts(text):
    """The (right, of) counts printed, as in `Acc: 13.333% (4/30)` or `Accuracy: 9900/10000 (99%)`."""
    return np.array([(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+)(?:\)| \()", text)]).reshape(-1, 2)


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
        kwargs["num_workers"] = 0  # samples draw their augmentation in order
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
    return rng


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

    class CIFAR10(torch.utils.data.Dataset):
        def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
            names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
            batches = []
            for name in names:
                with open(Path(root) / "cifar-10-batches-py" / name, "rb") as f:
                    batches.append(pickle.load(f, encoding="latin1"))
            self.data = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            self.targets = [t for b in batches for t in b["labels"]]
            self.transform = transform

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            img = Image.fromarray(self.data[i])
            return (self.transform(img) if self.transform else img), self.targets[i]

    class ToTensor:
        def __call__(self, pic):
            arr = np.array(pic, np.uint8)
            arr = arr[:, :, None] if arr.ndim == 2 else arr
            return torch.from_numpy(arr).permute(2, 0, 1).contiguous().float().div(255)

    class RandomCrop:  # zero padding, then a window at a random offset drawn from `transforms.rng`
        def __init__(self, size, padding=0):
            self.size, self.padding = size, padding

        def __call__(self, pic):
            arr, p, s = np.array(pic), self.padding, self.size
            padded = np.zeros((arr.shape[0] + 2 * p, arr.shape[1] + 2 * p) + arr.shape[2:], arr.dtype)
            padded[p:p + arr.shape[0], p:p + arr.shape[1]] = arr
            top = transforms.rng.integers(0, padded.shape[0] - s + 1)
            left = transforms.rng.integers(0, padded.shape[1] - s + 1)
            return Image.fromarray(padded[top:top + s, left:left + s])

    class RandomHorizontalFlip:
        def __init__(self, p=0.5):
            self.p = p

        def __call__(self, pic):
            return Image.fromarray(np.array(pic)[:, ::-1].copy()) if transforms.rng.random() < self.p else pic

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

    datasets.MNIST, datasets.CIFAR10 = MNIST, CIFAR10
    transforms.ToTensor, transforms.Normalize, transforms.Compose = ToTensor, Normalize, Compose
    transforms.RandomCrop, transforms.RandomHorizontalFlip = RandomCrop, RandomHorizontalFlip
    utils.save_image = lambda tensor, fp, **kw: Image.fromarray(np.zeros((2, 2), np.uint8)).save(fp)
    tv.datasets, tv.transforms, tv.utils = datasets, transforms, utils
    for name, mod in (("torchvision", tv), ("torchvision.datasets", datasets), ("torchvision.transforms", transforms),
                      ("torchvision.utils", utils)):
        monkeypatch.setitem(sys.modules, name, mod)
    return tv


def compare_runs(name, argv, capsys, monkeypatch, torchvision_standin=None, rtol=1e-4, mnist=True):
    """`argv` is the program's arguments, or a function of the framework giving the arguments
    of each of several runs one after another (e.g. train, then resume from the checkpoint)."""
    outputs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: a thread pool only adds waiting, a lot of it on a busy machine
    try:
        for L in (mt, torch):
            with monkeypatch.context() as m:
                # the CPU for both, also on a GPU machine: the shared random stream makes CPU tensors
                m.setattr(L.cuda, "is_available", lambda: False)
                m.setattr(L.accelerator, "is_available", lambda: False)
                rng = share_randomness(m, L, seed=0)
                if torchvision_standin is not None:
                    if L is mt:
                        m.setattr(mt.vision.transforms, "default_rng", lambda: rng)
                    else:
                        m.setattr(torchvision_standin.transforms, "rng", rng, raising=False)
                if torchvision_standin is not None and mnist:
                    if L is mt:
                        small_mnist(m, mt.vision.datasets, mt.utils.data.Subset)
                    else:
                        small_mnist(m, torchvision_standin.datasets, torch.utils.data.Subset)
                runs = argv(L) if callable(argv) else [argv]
                outputs.append("".join(run(name, L, args, capsys) for args in runs))
    finally:
        torch.set_num_threads(threads)
    got, want = numbers(outputs[0]), numbers(outputs[1])
    assert len(got) == len(want) > 3, outputs
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6, err_msg=f"{name}:\n{outputs[0]}\n{outputs[1]}")
    # a prediction whose two best logits are a rounding apart may go either way: one in a count
    got, want = counts(outputs[0]), counts(outputs[1])
    assert got.shape == want.shape and (got[:, 1] == want[:, 1]).all(), outputs
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=0, atol=1, err_msg=f"{name}:\n{outputs[0]}\n{outputs[1]}")
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


@pytest.fixture
def tiny_cifar10(tmp_path):
    """A CIFAR-10 of 60 training and 40 test images in the original pickle format (batches of dicts)."""
    rng = np.random.default_rng()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, n in [(f"data_batch_{i}", 12) for i in range(1, 6)] + [("test_batch", 40)]:
        batch = {"batch_label": name, "labels": rng.integers(0, 10, n).tolist(),
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "filenames": [f"{k}.png" for k in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return tmp_path


def test_cifar10_classifier_matches_pytorch(capsys, monkeypatch, torchvision_standin, tiny_cifar10):
    out = compare_runs("cifar10_classifier", ["--data", str(tiny_cifar10), "--epochs", "2", "--log-interval", "5",
                                              "--save", str(tiny_cifar10 / "cifar_net.pth")],
                       capsys, monkeypatch, torchvision_standin, mnist=False)
    assert "Accuracy of the network on the 40 test images" in out and "Accuracy for class" in out


def test_cifar_resnet18_matches_pytorch_and_resumes(capsys, monkeypatch, torchvision_standin, tiny_cifar10):
    """Train two epochs, then resume from the best checkpoint for a third. A small learning rate:
    at 0.002 and more, this network on random labels grows float32 rounding past 1e-4 in nine steps."""
    def runs(framework):
        common = ["--data", str(tiny_cifar10), "--width", "8", "--batch-size", "30", "--test-batch-size", "20",
                  "--lr", "0.001", "--checkpoint", str(tiny_cifar10 / f"checkpoint-{framework.__name__}")]
        return [common + ["--epochs", "2"], common + ["--epochs", "3", "--resume"]]
    out = compare_runs("cifar_resnet18", runs, capsys, monkeypatch, torchvision_standin, mnist=False)
    assert "Resumed from epoch" in out and out.count("Test Loss") >= 3
