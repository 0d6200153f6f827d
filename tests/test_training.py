"""The training stack end to end: the CLI, run folder, checkpoints and --resume."""
import csv
import os

import numpy as np
import pytest

import mytensor as mt
from mytensor import optim
from mytensor.cli import main
from mytensor.training import load_checkpoint, save_checkpoint
from mytensor.training.run import train

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_matches_uninterrupted_run(run_options, tmp_path, device, optimizer):
    full = train(run_options("full", device=device, optimizer=optimizer, warmup=1), show_progress=False)
    cut = run_options("cut", device=device, optimizer=optimizer, warmup=1)
    train(cut, show_progress=False, stop_after=1)  # as if killed after the first epoch
    assert load_checkpoint(tmp_path / "cut" / "last.ckpt")["epoch"] == 1
    resumed = train(dict(cut), resume=True, show_progress=False)
    a = load_checkpoint(tmp_path / "full" / "last.ckpt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.ckpt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert [r["test_acc"] for r in full] == pytest.approx([r["test_acc"] for r in resumed])


def test_cli_train_writes_run_folder_then_eval_and_predict(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "--dataset", f"folder:{tiny_folder}", "--model", "mlp", "--epochs", "2", "--batch-size", "8",
          "--lr", "0.05", "--device", "cpu", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert "Epoch 2: train_loss=" in printed and "test_acc=" in printed and "epoch_time=" in printed
    assert "train_acc5=1.0000" in printed and "test_acc5=1.0000" in printed  # 3 classes: always in the top 5
    for name in ("config.json", "metrics.csv", "last.ckpt", "best.ckpt", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert list(rows[0])[-4:] == ["train_acc5", "test_acc5", "elapsed", "test_time"] and \
        float(rows[1]["test_acc5"]) == 1.0 and float(rows[0]["test_time"]) > 0
    assert 0 < float(rows[0]["elapsed"]) < float(rows[1]["elapsed"])
    best = max(float(r["test_acc"]) for r in rows)

    main(["eval", str(out), "--device", "cpu"])
    line = capsys.readouterr().out
    assert f"test_acc={best:.4f} test_acc5=1.0000" in line

    main(["predict", str(out), str(tiny_folder / "test" / "green" / "0.png"), "--top", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and {ln.split()[0] for ln in lines} == {"red", "green", "blue"}
    percents = [float(ln.split()[1].rstrip("%")) for ln in lines]
    assert percents == sorted(percents, reverse=True) and sum(percents) == pytest.approx(100, abs=0.5)


def test_resume_without_a_run_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--resume", "--out", str(tmp_path / "missing")])
    assert "missing is not a run folder (it has no config.json)" in capsys.readouterr().err


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.ckpt"
    save_checkpoint({"epoch": 1}, path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np.lib.format, "write_array", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint({"epoch": 2, "weights": np.ones(3)}, path)
    assert load_checkpoint(path) == {"epoch": 1}  # the old file survives a failed write
    assert os.listdir(tmp_path) == ["ck.ckpt"]  # and no temporary file is left behind


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(b"not a pickle")
    with pytest.raises(RuntimeError, match="corrupt"):
        load_checkpoint(path)


GRAPHED_OPTIMIZERS = {
    "sgd": lambda params: optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4),
    "adam": lambda params: optim.Adam(params, lr=1e-3, weight_decay=1e-4),
    "adamw": lambda params: optim.AdamW(params, lr=1e-3),
}


@pytest.mark.gpu
@pytest.mark.skipif(not mt.cuda_is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("name", GRAPHED_OPTIMIZERS)
def test_graphed_steps_match_eager_steps(name):
    """Replaying a captured step trains exactly like running it eagerly, with the learning
    rate (and SGD's momentum, Adam's beta1) moved by OneCycle after every batch and Adam's
    bias correction changing every step."""
    from mytensor import models
    from mytensor.training.loop import RunningTotals, train_step
    batches = [(mt.randn(16, 3, 32, 32, device="cuda"), mt.randint(0, 10, (16,), device="cuda")) for _ in range(6)]
    batches.append((mt.randn(5, 3, 32, 32, device="cuda"), mt.randint(0, 10, (5,), device="cuda")))  # odd last
    batches += batches[:3]
    results = []
    for graphed in (False, True):
        mt.manual_seed(0)
        model = models.get_model("cifar_lenet", num_classes=10, in_channels=3, image_size=32).to("cuda")
        opt = GRAPHED_OPTIMIZERS[name](model.parameters())
        scheduler = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05 if name == "sgd" else 3e-3,
                                                  total_steps=len(batches))
        totals = RunningTotals()
        step = train_step(model, opt, totals=totals)
        if graphed:
            step = mt.cuda.graphed(step, fallback=True)  # the odd batch runs eagerly
        losses = []
        for x, y in batches:
            losses.append(float(step(x, y)[1].item()))
            scheduler.step()
        assert not graphed or step.graph is not None
        results.append((losses, [p.detach().cpu().numpy() for p in model.parameters()], totals))
    (eager_losses, eager_params, eager_totals), (graph_losses, graph_params, graph_totals) = results
    np.testing.assert_allclose(graph_losses, eager_losses, rtol=1e-4)
    assert graph_totals.count.item() == eager_totals.count.item() == sum(len(y) for _, y in batches)
    assert graph_totals.correct.item() == eager_totals.correct.item()
    assert graph_totals.correct_top_k.item() == eager_totals.correct_top_k.item()
    np.testing.assert_allclose(graph_totals.read(), eager_totals.read(), rtol=1e-4)
    for a, b in zip(eager_params, graph_params):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "is not a run folder" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["train", "--model", "nope", "--out", str(tmp_path / "run"), "--no-progress"])
    assert "unknown model 'nope'; available: " in capsys.readouterr().err


def test_running_totals_sum_on_the_device_and_read_once():
    from mytensor.training.loop import RunningTotals
    totals = RunningTotals()
    assert all(np.isnan(totals.read()))
    rng = np.random.default_rng()
    want_loss, want_correct, want_top5, n = 0.0, 0, 0, 0
    for size in (8, 8, 3):
        logits, targets = rng.standard_normal((size, 12)), rng.integers(0, 12, size)
        loss = float(rng.random())
        totals.add(mt.tensor(logits), mt.tensor(targets), mt.tensor(loss, dtype=mt.float64))
        top5 = np.argsort(-logits, axis=1)[:, :5]
        want_loss, n = want_loss + loss * size, n + size
        want_correct += (logits.argmax(1) == targets).sum()
        want_top5 += (top5 == targets[:, None]).any(1).sum()
    assert totals.count.item() == n and totals.correct.item() == want_correct
    assert totals.correct_top_k.item() == want_top5
    np.testing.assert_allclose(totals.read(), (want_loss / n, want_correct / n, want_top5 / n), rtol=1e-12)


@pytest.mark.parametrize("dtype", [mt.float32, mt.bfloat16])
def test_target_rank_is_the_place_in_a_stable_sort(dtype):
    """Ties (many here: small integers) rank as `argmax` and a stable descending sort order them."""
    from mytensor.training.loop import target_rank
    rng = np.random.default_rng()
    logits, targets = rng.integers(-3, 4, (64, 20)).astype(np.float32), rng.integers(0, 20, 64)
    order = np.argsort(-logits, axis=1, kind="stable")
    want = (order == targets[:, None]).argmax(1)
    got = target_rank(mt.tensor(logits).to(dtype), mt.tensor(targets))
    assert got.dtype == mt.int64 and got.tolist() == want.tolist()
    assert ((got == 0) == mt.tensor(logits.argmax(1) == targets)).all().item()


def test_a_dataset_name_in_capitals_augments_as_its_dataset():
    """`--dataset MNIST --augment` crops MNIST as MNIST declares (pad 2, no flips: a mirrored 3
    is not a 3), whatever the spelling of its name."""
    import dataclasses

    from mytensor.data import transforms as T
    from mytensor.training.run import RunConfig, build_data
    config = dataclasses.replace(RunConfig(dataset="MNIST", augment=True, model="mlp"), resolved_device="cpu")
    _, loader = build_data(config, train=True)
    kinds = [type(s) for s in loader.transform.transforms]
    assert T.RandomHorizontalFlip not in kinds and T.RandomCrop in kinds
    assert [s.padding for s in loader.transform.transforms if isinstance(s, T.RandomCrop)] == [2]
