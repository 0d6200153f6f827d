"""Recipes (`--recipe airbench94`, `--recipe airbench94_muon`, `--recipe resnet9`, `--recipe
tinyimagenet-resnet18`) and the training pieces they add: their defaults, parameter groups (or
optimizers), schedule and slow weights, test-time
augmentation, time to accuracy, --runs, and resuming a recipe run exactly. On the CPU with 32x32
images, and 64x64 ones in a small Tiny ImageNet tarball."""
import csv
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import mytensor as mt
from mytensor import models, nn, optim
from mytensor.cli import main
from mytensor.nn.modules.whitening import whitening_weight
from mytensor.training.checkpoint import load_checkpoint
from mytensor.training.loop import tta_logits
from mytensor.training.recipes import RECIPES, warmup_linear_decay
from mytensor.training.run import RunConfig, _print_milestones, build_optimizer, build_scheduler, fit_to_data, train

sys.path.insert(0, str(Path(__file__).parent / "data"))
from data_helpers import write_tiny_imagenet  # noqa: E402


def assert_resumes_exactly(options, full_run, full_rows):
    """A run of `options` cut after its first epoch and resumed ends with the weights and the test
    accuracies of the uncut run in `full_run`, whose rows were `full_rows`."""
    train(options, show_progress=False, stop_after=1)
    resumed = train({"out": options["out"]}, resume=True, show_progress=False)
    a = load_checkpoint(full_run / "last.ckpt")["model"]
    b = load_checkpoint(Path(options["out"]) / "last.ckpt")["model"]
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert [r["test_acc"] for r in resumed] == pytest.approx([r["test_acc"] for r in full_rows])


@pytest.fixture
def folder32(tmp_path, monkeypatch):
    """3 classes of 32x32 RGB PNGs (the dominant colour is the class): 16 train, 4 test each."""
    from PIL import Image
    monkeypatch.setenv("MYTENSOR_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 4)):
        for c, name in enumerate(("red", "green", "blue")):
            (tmp_path / "shapes" / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
                img[..., c] += 150
                Image.fromarray(img).save(tmp_path / "shapes" / split / name / f"{i}.png")
    return tmp_path / "shapes"


def small(folder, out, **changes):
    """The airbench94 recipe on `folder`, batches of 16. Its lr (1.5) is for batches of 1024: at 16
    the first steps overshoot, and where training lands after that is chaotic (the same weights
    part between the CPU and the GPU by float rounding alone), so these runs take a stable 0.2."""
    return {"recipe": "airbench94", "dataset": f"folder:{folder}", "epochs": 2, "batch_size": 16, "lr": 0.2,
            "device": "cpu", "out": str(out), **changes}


def test_a_recipe_fills_the_options_not_given():
    config = RunConfig.from_options({"recipe": "airbench94", "epochs": 12})
    assert (config.model, config.batch_size, config.epochs, config.schedule, config.tta) == \
        ("airbench94", 1024, 12, "recipe", "translate")
    assert config.data_on_device and config.drop_last and config.nesterov and config.label_smoothing == 0.2
    assert config.lr * config.weight_decay == pytest.approx(0.0153 / (1 + 1 / 0.15))  # airbench's decay per step
    resnet9 = RunConfig.from_options({"recipe": "resnet9"})
    assert (resnet9.model, resnet9.batch_size, resnet9.lr, resnet9.weight_decay, resnet9.schedule) == \
        ("resnet9", 512, 0.4, 5e-4, "onecycle")
    assert resnet9.nesterov and resnet9.augment and resnet9.label_smoothing == 0.2 and resnet9.epochs == 10
    with pytest.raises(ValueError, match="--schedule recipe"):
        RunConfig.from_options({"schedule": "recipe"})
    with pytest.raises(ValueError, match="--recipe 'fast'"):
        RunConfig.from_options({"recipe": "fast"})


def test_airbench_groups_schedule_and_slow_weights():
    config = RunConfig.from_options({"recipe": "airbench94", "epochs": 4})
    model = models.get_model("airbench94")
    opt = build_optimizer(config, model)
    weights, biases, whiten = opt.param_groups
    assert biases["lr"] == 64 * weights["lr"] and biases["weight_decay"] == pytest.approx(weights["weight_decay"] / 64)
    assert len(biases["params"]) == 6 and whiten["params"] == [model.whiten.bias]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(map(id, trainable)) == sorted(id(p) for g in opt.param_groups for p in g["params"])
    scheduler, per_batch = build_scheduler(config, opt, steps_per_epoch=10)
    assert per_batch
    lrs = []
    for _ in range(40):
        lrs.append([g["lr"] / weights["initial_lr"] if i != 1 else g["lr"] / biases["initial_lr"]
                    for i, g in enumerate(opt.param_groups)])
        scheduler.step()
    lrs = np.array(lrs)
    factor = warmup_linear_decay(40)
    np.testing.assert_allclose(lrs[:, 0], [factor(s) for s in range(40)])
    np.testing.assert_allclose(lrs[:, 1], lrs[:, 0])
    assert (lrs[:30, 2] == lrs[:30, 0]).all() and not lrs[30:, 2].any()  # the whitening bias stops after 3 epochs
    assert lrs[0, 0] == pytest.approx(0.2) and lrs[9, 0] == pytest.approx(1.0) and factor(40) == pytest.approx(0.07)
    look = RECIPES["airbench94"].lookahead(model, 40)
    assert look.k == 5 and look.alpha(5) == pytest.approx(1 - 0.95 ** 5 / 512) and \
        look.alpha(40) == pytest.approx(1 - 0.95 ** 5)


def test_airbench_muon_optimizers_and_schedule():
    config = RunConfig.from_options({"recipe": "airbench94_muon"})
    assert (config.model, config.batch_size, config.epochs, config.schedule, config.tta, config.label_smoothing) == \
        ("airbench94_muon", 2000, 8, "recipe", "translate", 0.2)
    assert config.data_on_device and config.drop_last and config.momentum == 0.85 and config.nesterov
    assert RECIPES["airbench94_muon"].augmentation == RECIPES["airbench94"].augmentation
    model = models.get_model("airbench94_muon")
    assert model.scale == 1 / 256 and model.head.weight.std().item() == pytest.approx(1.0)
    opt = build_optimizer(config, model)
    muon, sgd = opt.optimizers
    (filters,) = muon.param_groups
    whiten, biases, head = sgd.param_groups
    assert opt.param_groups == [filters, whiten, biases, head]
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d) and not isinstance(m, nn.PatchWhitening)]
    assert [id(p) for p in filters["params"]] == [id(p) for p in convs]
    assert all(p.shape[0] <= p[0].numel() for p in convs)  # Muon's lr ratio is 1, as airbench has none
    assert (filters["lr"], filters["momentum"], filters["nesterov"], filters["weight_decay"], filters["ns_steps"],
            filters["normalize_weights"]) == (0.24, 0.6, True, 0.0, 3, True)
    assert whiten["params"] == [model.whiten.bias] and len(biases["params"]) == 6 and head["params"] == [
        model.head.weight]
    # airbench's summed loss: lr 0.053 and 0.67, weight_decay 2e-6 * 2000 / lr; the mean loss's are x and / 2000
    for group, lr in ((whiten, 0.053), (biases, 0.053), (head, 0.67)):
        assert group["lr"] == pytest.approx(lr * 2000) and group["lr"] * group["weight_decay"] == pytest.approx(
            2e-6 * 2000)
        assert group["momentum"] == 0.85 and group["nesterov"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(map(id, trainable)) == sorted(id(p) for g in opt.param_groups for p in g["params"])

    scheduler, per_batch = build_scheduler(config, opt, steps_per_epoch=25)  # 200 steps, the whitening bias 75
    assert per_batch
    starts = [0.24, 0.053 * 2000, 0.053 * 2000, 0.67 * 2000]
    want = {0: [1, 1, 1, 1], 50: [0.75, 1 / 3, 0.75, 0.75], 74: [0.63, 1 / 75, 0.63, 0.63],
            75: [0.625, 0, 0.625, 0.625], 199: [0.005, 0, 0.005, 0.005]}
    for step in range(200):
        if step in want:
            assert [g["lr"] / s for g, s in zip(opt.param_groups, starts)] == pytest.approx(want[step]), step
        scheduler.step()
    with pytest.raises(ValueError, match="builds its own optimizer"):
        RunConfig.from_options({"recipe": "airbench94_muon", "optimizer": "adam"})


def test_airbench_muon_recipe_trains_and_resumes_exactly(folder32, tmp_path, capsys):
    """Its lr (the biases') at batches of 16 as airbench94_muon's 0.053 of the summed loss."""
    options = {**small(folder32, tmp_path / "full"), "recipe": "airbench94_muon", "lr": 0.053 * 16}
    full = train(options, show_progress=False)
    assert "with the airbench94_muon recipe" in capsys.readouterr().out
    assert full[-1]["test_acc"] > 0.9 and full[0]["lr"] == pytest.approx(0.24 * (1 - 3 / 6))  # the filters' lr
    saved = json.loads((tmp_path / "full" / "config.json").read_text())
    assert saved["recipe"] == "airbench94_muon" and saved["model"] == "airbench94_muon"
    assert len(load_checkpoint(tmp_path / "full" / "last.ckpt")["optimizer"]["param_groups"]) == 4

    assert_resumes_exactly({**options, "out": str(tmp_path / "cut")}, tmp_path / "full", full)


class Tiny(nn.Module):
    """A network that sees where things are, so shifted and mirrored views give other logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def test_tta_averages_the_views_airbench_uses():
    mt.manual_seed(0)
    model = Tiny()
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)

    def logits(views):
        with mt.no_grad():
            return [model(mt.tensor(np.ascontiguousarray(v))).numpy() for v in views]

    plain, mirror = logits([x, x[..., ::-1]])
    padded = torch.nn.functional.pad(torch.tensor(x), (1, 1, 1, 1), mode="reflect").numpy()
    up_left, down_right = padded[:, :, :8, :8], padded[:, :, 2:, 2:]
    shifted = logits([up_left, up_left[..., ::-1], down_right, down_right[..., ::-1]])
    with mt.no_grad():
        got = {t: tta_logits(model, mt.tensor(x), t).numpy() for t in ("none", "flip", "translate")}
    np.testing.assert_allclose(got["none"], plain, rtol=1e-6)
    np.testing.assert_allclose(got["flip"], (plain + mirror) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["translate"], (plain + mirror) / 4 + sum(shifted) / 8, rtol=1e-5, atol=1e-6)


def test_fit_to_data_whitens_with_a_spread_of_the_training_images(folder32):
    from mytensor.data import DeviceLoader, load_dataset, transforms
    from mytensor.data.dataset import to_float
    dataset = load_dataset(f"folder:{folder32}")
    model = models.get_model("airbench94")
    fit_to_data(model, dataset, count=12)  # every 4th of 48 images sorted by class: all three classes
    images = transforms.Normalize(*dataset.normalization)(to_float(dataset.images[::4]))
    want = whitening_weight(mt.tensor(images), 2, model.whiten.eps)
    got = model.whiten.weight.numpy()
    signs = np.sign((got * want).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(got * signs[:, None, None, None], want, rtol=1e-4, atol=1e-4)
    # from the images a DeviceLoader holds, normalised by its kernel (one multiply-add, not two steps)
    loader, on_device = DeviceLoader(dataset, batch_size=16), models.get_model("airbench94")
    np.testing.assert_allclose(loader.normalized(range(0, 48, 4)).numpy(), images, rtol=1e-5, atol=1e-5)
    fit_to_data(on_device, loader, count=12)
    np.testing.assert_allclose(on_device.whiten.weight.numpy(), got, atol=1e-3 * np.abs(got).max())


def test_airbench_recipe_trains_prints_milestones_and_resumes_exactly(folder32, tmp_path, capsys):
    full = train(small(folder32, tmp_path / "full"), show_progress=False)
    printed = capsys.readouterr().out
    assert "with the airbench94 recipe" in printed and "Reached " in printed and "% test accuracy in " in printed
    assert full[-1]["test_acc"] > 0.9 and 0 < full[0]["elapsed"] < full[1]["elapsed"]
    saved = json.loads((tmp_path / "full" / "config.json").read_text())
    assert saved["recipe"] == "airbench94" and saved["model"] == "airbench94" and saved["data_on_device"]
    assert load_checkpoint(tmp_path / "full" / "last.ckpt")["lookahead"]["steps"] == 6  # 3 batches of 16, 2 epochs

    assert_resumes_exactly(small(folder32, tmp_path / "cut"), tmp_path / "full", full)


def test_runs_repeat_with_seeds_and_print_the_spread(folder32, tmp_path, capsys):
    main(["train", "--recipe", "airbench94", "--dataset", f"folder:{folder32}", "--epochs", "1", "--batch-size",
          "16", "--device", "cpu", "--out", str(tmp_path / "many"), "--runs", "2", "--no-progress", "--tta", "none"])
    printed = capsys.readouterr().out
    assert "2 runs (seeds 0..1): final test_acc mean " in printed and " std " in printed
    seeds = [json.loads((tmp_path / "many" / f"run-{k}" / "config.json").read_text())["seed"] for k in (1, 2)]
    assert seeds == [0, 1]
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "many" / "run-1"), "--resume", "--runs", "2"])


def test_eval_uses_the_runs_tta(folder32, tmp_path, capsys):
    train(small(folder32, tmp_path / "run", epochs=1), show_progress=False)
    acc = load_checkpoint(tmp_path / "run" / "best.ckpt")["metrics"][-1]["test_acc"]
    capsys.readouterr()
    main(["eval", str(tmp_path / "run"), "--device", "cpu"])
    assert f"test_acc={acc:.4f}" in capsys.readouterr().out



@pytest.mark.gpu
@pytest.mark.skipif(not mt.cuda_is_available(), reason="no CUDA GPU (or CuPy not installed)")
def test_airbench_recipe_on_the_gpu_replays_its_steps(folder32, tmp_path, capsys):
    rows = train(small(folder32, tmp_path / "gpu", device="cuda", epochs=3), show_progress=False)
    printed = capsys.readouterr().out
    assert "replayed from a CUDA graph" in printed and "in bf16" in printed
    assert rows[-1]["test_acc"] > 0.9


@pytest.mark.gpu
@pytest.mark.skipif(not mt.cuda_is_available(), reason="no CUDA GPU (or CuPy not installed)")
def test_airbench_muon_recipe_on_the_gpu_replays_its_steps(folder32, tmp_path, capsys):
    rows = train({**small(folder32, tmp_path / "gpu", device="cuda", epochs=3), "recipe": "airbench94_muon",
                  "lr": 0.053 * 16}, show_progress=False)
    printed = capsys.readouterr().out
    assert "replayed from a CUDA graph" in printed and "in bf16" in printed
    assert rows[-1]["test_acc"] > 0.9


@pytest.fixture
def tiny_imagenet(tmp_path, monkeypatch):
    """A data folder holding tiny-imagenet-200.tar.gz: 2 classes, 4 train and 3 val JPEGs of 64x64."""
    monkeypatch.setenv("MYTENSOR_CACHE", str(tmp_path / "cache"))
    src = write_tiny_imagenet(tmp_path / "src" / "tiny-imagenet-200", np.random.default_rng(0))
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "tiny-imagenet-200.tar.gz", "w:gz") as t:
        t.add(src, "tiny-imagenet-200")
    return tmp_path / "data"


def test_the_tiny_imagenet_recipe_schedules_as_pytorch_s_onecycle():
    config = RunConfig.from_options({"recipe": "tinyimagenet-resnet18"})
    assert (config.dataset, config.model, config.epochs, config.batch_size, config.lr, config.weight_decay) == \
        ("tiny-imagenet", "resnet18", 18, 256, 0.2, 5e-4)
    assert config.nesterov and config.momentum == 0.9 and config.label_smoothing == 0.1 and config.augment
    assert config.data_on_device and config.drop_last and config.schedule == "onecycle"
    assert RECIPES["tinyimagenet-resnet18"].augmentation == {"translate": 4, "padding_mode": "reflect",
                                                             "flip": "random"}
    ours = build_optimizer(config, nn.Linear(2, 2))
    scheduler, per_batch = build_scheduler(config, ours, steps_per_epoch=5)
    theirs = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.2, momentum=0.9, nesterov=True,
                             weight_decay=5e-4)
    reference = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=0.2, total_steps=90, pct_start=0.25)
    assert per_batch
    for _ in range(89):
        for key in ("lr", "momentum"):
            assert ours.param_groups[0][key] == pytest.approx(theirs.param_groups[0][key], rel=1e-12), key
        scheduler.step()
        theirs.step()  # no gradients: only PyTorch's order of calls
        reference.step()


def test_milestones_are_the_recipe_s(capsys):
    _print_milestones(RECIPES["tinyimagenet-resnet18"].milestones, [{"test_acc": 0.52}], {"acc": 0.61, "time": 0.5},
                      10.0, 3)
    assert capsys.readouterr().out.startswith("Reached 55%, 60% test accuracy in 10.50 s (epoch 3:")


def test_tiny_imagenet_trains_from_its_tarball_with_the_recipe_and_without(tiny_imagenet, tmp_path, capsys):
    """`--recipe tinyimagenet-resnet18` (the data on the device, reflected crops) and the plain
    `--dataset tiny-imagenet --model resnet18` (loader threads) train and report top-5."""
    main(["train", "--recipe", "tinyimagenet-resnet18", "--data-dir", str(tiny_imagenet), "--epochs", "1",
          "--batch-size", "2", "--device", "cpu", "--out", str(tmp_path / "recipe"), "--no-progress"])
    printed = capsys.readouterr().out
    assert "Training resnet18 on tiny-imagenet (4 images) on cpu in fp32 with the tinyimagenet-resnet18 recipe" \
        in printed
    assert "Epoch 1: train_loss=" in printed and " train_acc5=1.0000 " in printed and " test_acc5=1.0000 " in printed
    saved = json.loads((tmp_path / "recipe" / "config.json").read_text())
    assert (saved["model"], saved["batch_size"], saved["data_on_device"], saved["drop_last"]) == \
        ("resnet18", 2, True, True)
    main(["train", "--dataset", "tiny-imagenet", "--model", "resnet18", "--data-dir", str(tiny_imagenet),
          "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "plain"), "--no-progress"])
    assert "Training resnet18 on tiny-imagenet (4 images) on cpu in fp32, into" in capsys.readouterr().out
    with open(tmp_path / "plain" / "metrics.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["test_acc5"]) == 1.0 and 0 <= float(row["test_acc"]) <= 1
