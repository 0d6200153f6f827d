"""The benchmark suite: its PyTorch twins match mytensor's models, its table
arithmetic is right, `python -m benchmarks --quick --device cpu` produces
every output file, and the twin of `mytensor train --recipe resnet9` follows the recipe."""
import json
import math
import os
import re
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import report, torch_models  # noqa: E402
from benchmarks.e2e import CONFIGS, DATASETS  # noqa: E402

MODELS = ["mlp", "lenet5", "simple_conv", "cifar_lenet", "cifar_cnn3", "resnet_small"]


def _shapes(model):
    return [tuple(p.shape) for p in model.parameters()]


@pytest.mark.parametrize("name,dataset", [(m, d) for m in MODELS for d in ("mnist", "cifar10")]
                         + [("resnet9", "cifar10"), ("resnet18", "cifar10"), ("airbench94", "cifar10")])
def test_torch_twin_has_the_same_parameters(name, dataset):
    from mytensor.models import get_model
    _, c, side, classes = DATASETS[dataset]
    mine = get_model(name, num_classes=classes, in_channels=c, image_size=side)
    twin = torch_models.get_model(name, num_classes=classes, in_channels=c, image_size=side)
    assert _shapes(mine) == _shapes(twin)
    if hasattr(mine, "named_parameters"):
        assert [n for n, _ in mine.named_parameters()] == [n for n, _ in twin.named_parameters()]
    if hasattr(mine, "buffers"):  # batch-norm running statistics
        assert sorted(tuple(b.shape) for b in mine.buffers() if len(b.shape) > 0) == sorted(
            tuple(b.shape) for b in twin.buffers() if b.ndim > 0)


def test_resnet18_gives_its_twin_s_logits_with_the_same_weights():
    """Tiny ImageNet's ResNet-18 (64x64 images, 200 classes): the same logits as its PyTorch twin in training
    mode (batch statistics, which update the running ones) and then in eval mode (the running statistics)."""
    import numpy as np

    import mytensor as mt
    from mytensor.models import get_model
    mt.manual_seed(0)
    mine = get_model("resnet18", num_classes=200, in_channels=3, image_size=64)
    twin = torch_models.get_model("resnet18", num_classes=200, in_channels=3, image_size=64)
    twin.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in mine.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    for training in (True, False):
        mine.train(training)
        twin.train(training)
        with mt.no_grad(), torch.no_grad():
            got, want = mine(mt.tensor(x)).numpy(), twin(torch.tensor(x)).numpy()
        assert got.shape == (2, 200)
        assert np.linalg.norm(got - want) <= 1e-4 * np.linalg.norm(want), training


def test_every_e2e_model_has_a_twin():
    for cfg in CONFIGS:
        torch_models.get_model(cfg["model"])


def test_table_ratios():
    results = {"ops": {"rows": [
        {"op": "conv2d", "axis": "batch", "value": 1, "n": 1, "size": 8, "cin": 3, "cout": 8,
         "mytensor": {"median_s": 0.004}, "torch": {"median_s": 0.002}},
        {"op": "conv2d", "axis": "size", "value": 8, "n": 1, "size": 8, "cin": 3, "cout": 8,  # same point again
         "mytensor": {"median_s": 0.004}, "torch": {"median_s": 0.002}},
        {"op": "linear", "axis": "batch", "value": 1, "n": 1, "size": 8, "cin": 3, "cout": 8,
         "mytensor": {"error": "boom"}, "torch": {"median_s": 0.001}}]},
        "e2e": {"rows": [{"model": "mlp", "dataset": "mnist", "batch": 64, "optimizer": "sgd",
                          "mytensor": {"s_per_epoch": 3.0}, "torch": {"s_per_epoch": 6.0}}]},
        "memory": {"rows": [{"model": "mlp", "dataset": "mnist", "batch": 64, "optimizer": "sgd",
                             "mytensor": {"peak_bytes": 3 * 2 ** 20}, "torch": {"peak_bytes": 2 * 2 ** 20}}]}}
    rows = report.table_rows(results)
    assert [r["ratio"] for r in rows] == [pytest.approx(2.0), None, pytest.approx(0.5), pytest.approx(1.5)]
    text = report.format_table(rows)
    assert "conv2d" in text and "linear" in text and text.count("\n") == len(rows) + 2


def test_quick_cpu_suite(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--device", "cpu", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (out,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert out.name.startswith("cpu-")
    for name in ["results.json", "table.txt", "table.md", "ops_vs_batch.png", "ops_vs_size.png",
                 "ops_vs_channels.png", "e2e.png"]:
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["versions"]["numpy"] and results["meta"]["device"] == "cpu"
    assert results["frameworks"] == ["mytensor", "torch"]
    sections = {r["section"] for r in results["table"]}
    assert sections == {"host us/op", "ops fwd+bwd", "e2e s/epoch", "peak memory"}
    for row in results["table"]:
        assert isinstance(row["ratio"], float) and math.isfinite(row["ratio"]) and row["ratio"] > 0, row
    for row in results["ops"]["rows"]:
        assert len(row["mytensor"]["times_s"]) >= 1
    assert proc.stdout.rstrip().endswith((out / "table.txt").read_text().rstrip())  # the table is printed last


def test_cpu_memory_child_process():
    from benchmarks import memory
    out = memory.cpu_peak("mytensor", "mlp")
    # the gradients of 784-512-256-10 alone are 2.1 MB (RSS may reuse pages freed
    # before, so parameters and momentum buffers need not show up as growth)
    assert 2e6 < out["peak_bytes"] < 200e6, out


def test_time_to_accuracy_reads_airbench_s_table_and_compares(monkeypatch):
    """The time section: airbench94's printed table read back (its final rows carry the TTA accuracy
    and the run's seconds), the warm runs' mean time, the table row, and a clear skip without a GPU,
    the anchors or the data."""
    from benchmarks import time_to_accuracy as tta

    def row(*cells):  # one line as airbench94 prints it: '|  cell  ' per column, then '|'
        return "".join(f"|  {c}  " for c in cells) + "|"
    text = "\n".join(["-" * 20, row("run   ", "epoch", "train_loss", "train_acc", "val_acc", "tta_val_acc",
                                    "total_time_seconds"), "-" * 20,
                      row("     0", "    1", "    1.2000", "   0.5000", " 0.6000", "           ", "            0.2500"),
                      row("      ", " eval", "          ", "   0.9000", " 0.9050", "     0.9100", "            2.5000"),
                      row("     1", "    1", "    1.1000", "   0.5500", " 0.6100", "           ", "            0.2000"),
                      row("      ", " eval", "          ", "   0.9100", " 0.9010", "     0.9060", "            1.9000"),
                      "Mean: 0.9080    Std: 0.0028"])
    runs = tta.parse_airbench(text)
    assert runs == [(0.91, 2.5), (0.906, 1.9)]
    theirs = tta.summary(runs)
    assert theirs["s_mean"] == 1.9 and theirs["acc_mean"] == pytest.approx(0.908) and theirs["reached"]
    muon = "\n".join([row("run   ", "epoch", "train_acc", "val_acc", "tta_val_acc", "time_seconds"),
                      row("warmup", " eval", "   0.1000", " 0.1000", "     0.1000", "      9.0000"),
                      row("     0", " eval", "   0.9000", " 0.9050", "     0.9070", "      1.6000")])
    assert tta.parse_airbench(muon) == [(0.1, 9.0), (0.907, 1.6)]  # airbench94_muon's columns, its warm-up first
    results = {"time": {"rows": [{"recipe": "airbench94", "target": tta.TARGET, "runs": 2, "airbench94": theirs,
                                  "mytensor": tta.summary([(0.905, 9.0), (0.907, 3.8)])},
                                 {"recipe": "airbench94_muon", "target": tta.TARGET, "runs": 2,
                                  "airbench94_muon": tta.summary([(0.907, 1.7), (0.906, 1.6)]),
                                  "mytensor": tta.summary([(0.904, 9.0), (0.908, 1.5)])}]}}
    time_row, acc_row, muon_time, _ = report.table_rows(results)
    assert time_row["ratio"] == pytest.approx(3.8 / 1.9) and acc_row["mytensor"] == pytest.approx(90.6)
    assert muon_time["ratio"] == pytest.approx(1.5 / 1.6) and muon_time["name"] == "airbench94_muon recipe"
    assert "(airbench94)" in report.format_table([time_row, acc_row])
    assert "(airbench94_muon)" in report.format_table([muon_time])
    assert "GPU only" in tta.run("cpu", {})["skipped"]
    monkeypatch.delenv("MYTENSOR_ANCHORS", raising=False)
    assert "MYTENSOR_ANCHORS" in tta.run("cuda", {})["skipped"]


def test_precisions_option_picks_rows_and_names_a_bad_one(capsys):
    from benchmarks.__main__ import parse_args
    assert parse_args(["--precisions", "bf16"]).precisions == ("bf16",)
    assert parse_args([]).precisions == ("fp32", "tf32", "bf16")
    with pytest.raises(SystemExit):
        parse_args(["--precisions", "bf16,fp64"])
    assert "unknown precision 'fp64'" in capsys.readouterr().err


DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")  # ../shared/data, the CIFAR-10 JPEG copy
EPOCH_LINE = re.compile(r"Epoch 1: train_loss=(\S+) train_acc=(\S+) train_acc5=(\S+) test_loss=(\S+) "
                        r"test_acc=(\S+) test_acc5=(\S+) epoch_time=(\S+)s")


@pytest.mark.skipif(not os.path.isfile(os.path.join(DATA, "cifar10-jpeg.tar.gz")), reason=f"no CIFAR-10 in {DATA}")
def test_resnet9_twin_trains_an_epoch_with_the_recipe_s_settings(monkeypatch, capsys):
    """`python -m benchmarks.torch_train --recipe resnet9` on 64 images on the CPU: the settings it
    prints are the recipe's, and its epoch line parses, with a finite loss and accuracies in [0, 1]."""
    from benchmarks import torch_train
    from mytensor.training.recipes import RECIPES
    monkeypatch.setenv("MYTENSOR_DATA", DATA)
    torch_train.main(["--recipe", "resnet9", "--epochs", "1", "--device", "cpu", "--limit", "64", "--threads", "2"])
    out = capsys.readouterr().out
    used = dict(re.findall(r"(\w+)=([^\s,()]+)", out.splitlines()[1]))
    recipe = RECIPES["resnet9"].defaults
    for key in ("lr", "momentum", "weight_decay", "label_smoothing", "batch_size"):
        assert float(used[key]) == pytest.approx(recipe[key]), key
    assert used["nesterov"] == str(recipe["nesterov"]) and used["epochs"] == "1" and used["total_steps"] == "1"
    assert float(used["pct_start"]) == RECIPES["resnet9"].onecycle_rise
    assert float(used["base_momentum"]) == pytest.approx(recipe["momentum"] - 0.05)
    assert float(used["max_momentum"]) == pytest.approx(recipe["momentum"] + 0.05)
    assert (used["translate"], used["padding_mode"], used["flip"]) == ("4", "zeros", "random")  # CIFAR-10's
    assert "(64 images)" in out
    loss, acc, acc5, test_loss, test_acc, test_acc5, seconds = map(float, EPOCH_LINE.search(out).groups())
    assert math.isfinite(loss) and math.isfinite(test_loss) and seconds > 0
    assert all(0 <= a <= 1 for a in (acc, acc5, test_acc, test_acc5)) and acc <= acc5
    assert re.search(r"Training time: [\d.]+ s \(epoch 1: [\d.]+ s\)", out)


def test_resnet9_twin_augments_as_the_device_loader():
    """The twin's crops of the zero-padded images, flipped and normalised, are mytensor's
    `augment_images` with the same shifts (a flip mirrors the horizontal one) and flips."""
    import types

    import numpy as np

    from benchmarks.torch_train import DeviceImages
    from mytensor.backend import get_backend
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    dataset = types.SimpleNamespace(images=images, targets=list(range(6)), normalization=((0.4, 0.5, 0.6),
                                                                                          (0.2, 0.25, 0.3)))
    data = DeviceImages(dataset, "cpu", translate=2, flip="random")
    index = torch.tensor([4, 0, 5, 1])
    corners = torch.tensor([[0, 4], [2, 2], [4, 1], [1, 0]])
    flips = torch.tensor([False, True, True, False])
    got = (data.crops(index, corners, flips).float() * data.scale + data.shift).numpy()
    shifts = (corners - 2).numpy()
    shifts[:, 1] *= np.where(flips.numpy(), -1, 1)
    backend = get_backend("cpu")
    want = backend.augment_images(images, index.numpy(), data.scale.flatten().numpy(), data.shift.flatten().numpy(),
                                  np.float32, shifts.astype(np.int32), flips.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no optimizer steps here
def test_torch_onecycle_with_mytensor_s_options_follows_mytensor_s():
    """PyTorch's OneCycleLR given `onecycle_options` of the resnet9 recipe steps through the lr and
    momentum of mytensor's."""
    import mytensor as mt
    from mytensor.optim import SGD, lr_scheduler
    from mytensor.training.run import RunConfig, onecycle_options
    config = RunConfig.from_options({"recipe": "resnet9", "epochs": 2})
    theirs = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr, momentum=config.momentum)
    mine = SGD([mt.zeros(1, requires_grad=True)], lr=config.lr, momentum=config.momentum)
    schedules = [cls(opt, total_steps=20, **onecycle_options(config)) for cls, opt in
                 ((torch.optim.lr_scheduler.OneCycleLR, theirs), (lr_scheduler.OneCycleLR, mine))]
    for _ in range(20):
        assert [theirs.param_groups[0][k] for k in ("lr", "momentum")] == pytest.approx(
            [mine.param_groups[0][k] for k in ("lr", "momentum")])
        for s in schedules:
            s.step()
