"""Fixtures shared by the training tests."""
import numpy as np
import pytest


@pytest.fixture
def tiny_folder(tmp_path, monkeypatch):
    """A 3-class image-folder dataset of 8x8 RGB PNGs, split into train/ and test/."""
    from PIL import Image
    monkeypatch.setenv("MYTENSOR_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng()
    root = tmp_path / "shapes"
    for split, n in (("train", 24), ("test", 6)):
        for c, name in enumerate(("red", "green", "blue")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (8, 8, 3), dtype=np.uint8)
                img[..., c] += 150  # the class is the dominant colour: learnable in a few steps
                Image.fromarray(img).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture
def run_options(tiny_folder, tmp_path):
    """options(out, **changes): the options of a small run into tmp_path/out, as
    `mytensor train` would pass them (momentum only for sgd, as the CLI demands)."""
    def options(out="run", **changes):
        sgd = changes.get("optimizer", "sgd") == "sgd"
        base = {"dataset": f"folder:{tiny_folder}", "model": "mlp", "epochs": 3, "batch_size": 8, "optimizer": "sgd",
                "lr": 0.05 if sgd else 0.01, **({"momentum": 0.9} if sgd else {}), "weight_decay": 1e-4,
                "schedule": "cosine", "warmup": 0, "augment": True, "device": "cpu", "seed": 3,
                "out": str(tmp_path / out)}
        return {**base, **changes}
    return options


@pytest.fixture
def train_args():
    """train_args(options, *extra): `mytensor train` arguments for a dict of options."""
    def args(options, *extra):
        out = ["train", "--no-progress"]
        for k, v in options.items():
            out += [f"--{k.replace('_', '-')}"] + ([] if v is True else [v])
        return [str(a) for a in out + list(extra)]
    return args
