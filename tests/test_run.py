"""The run folder's contract, --resume, validation and errors: each bad case a user met, now handled."""
import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import mytensor as mt
from mytensor.cli import main
from mytensor.serialization import atomic_write
from mytensor.training import load_checkpoint, run as run_module
from mytensor.training.run import RUN_FILES, RunConfig, cpu_threads, train


class RunsCode:
    """A hostile checkpoint's content: unpickling it runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(autouse=True)
def quick_curves(monkeypatch):
    """curves.png as a few bytes: matplotlib would take most of these tests' time (and
    test_training checks the real plot)."""
    def plot(rows, path):
        with atomic_write(path) as f:
            f.write(b"png")
    monkeypatch.setattr(run_module, "plot_curves", plot)


@pytest.fixture
def cli(capsys):
    """cli(*args) -> (exit code, stdout, stderr) of `mytensor ARGS`."""
    def run(*args):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err
    return run


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in RUN_FILES if (folder / name).exists()}


def _lrs(folder):
    return [row["lr"] for row in load_checkpoint(folder / "last.ckpt")["metrics"]]


# ---------------------------------------------------------------- 1, 2: a run folder is never clobbered
def test_a_new_run_refuses_a_folder_holding_a_run(run_options, tmp_path, cli, monkeypatch, train_args):
    out = tmp_path / "run"
    assert cli(*train_args(run_options(epochs=1)))[0] == 0
    before = _snapshot(out)
    code, _, err = cli(*train_args(run_options(epochs=1, model="simple_conv")))
    assert code == 2 and "holds a run already" in err and "--resume" in err and "--overwrite" in err
    code, _, err = cli(*train_args(run_options(epochs=1, model="lenet55")))  # a typo: nothing may be written
    assert code == 2 and "unknown model 'lenet55'" in err
    assert _snapshot(out) == before
    assert cli("eval", out)[0] == 0

    assert cli(*train_args(run_options(epochs=1, seed=4), "--overwrite"))[0] == 0
    assert RunConfig.load(out / "config.json").seed == 4 and _snapshot(out) != before

    monkeypatch.chdir(tmp_path)  # without --out, every run gets a folder of its own
    opts = {k: v for k, v in run_options(epochs=1).items() if k != "out"}
    for _ in range(2):
        assert cli(*train_args(opts))[0] == 0
    assert len(os.listdir(tmp_path / "runs")) == 2


def test_a_second_writer_is_refused_while_the_first_runs(run_options, tmp_path, cli, train_args):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "mytensor", *train_args(run_options(epochs=6))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (out / "config.json").exists():  # written once the first process holds the lock
            assert first.poll() is None, first.communicate()
            time.sleep(0.02)
        code, _, err = cli(*train_args(run_options(epochs=1, seed=5), "--overwrite"))
        assert code == 2 and f"{out} is in use by another training process (pid {first.pid} on" in err
        code, _, err = cli(*train_args(run_options(), "--resume"))
        assert code == 2 and "in use by another training process" in err
    finally:
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    state = load_checkpoint(out / "last.ckpt")
    assert state["epoch"] == 6 and state["config"] == json.loads((out / "config.json").read_text())


# ---------------------------------------------------------------- 3: checkpoints cannot run code
def test_a_checkpoint_that_would_run_code_is_refused_everywhere(run_options, tmp_path, tiny_folder, cli, train_args):
    out = tmp_path / "run"
    assert cli(*train_args(run_options(epochs=1), "--epochs", 2))[0] == 0
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"model": RunsCode(marker), "epoch": 1})
    for name in ("best.ckpt", "last.ckpt"):
        (out / name).write_bytes(evil)
    for args in (("eval", out), ("predict", out, tiny_folder / "test" / "red" / "0.png"),
                 ("train", "--out", out, "--resume", "--epochs", 3, "--no-progress")):
        code, _, err = cli(*args)
        assert code == 2 and "refused posix.system" in err and "could run any code" in err, args
    with pytest.raises(pickle.UnpicklingError, match="refused posix.system"):
        load_checkpoint(out / "last.ckpt")
    assert not marker.exists()


# ---------------------------------------------------------------- 4: --resume
@pytest.mark.parametrize("schedule", ["none", "step", "multistep", "cosine", "onecycle"])
def test_continue_an_interrupted_run_as_the_readme_says(run_options, tmp_path, cli, schedule):
    """`mytensor train --out RUN --resume --epochs N`: after an interruption, and to extend a finished run."""
    out = tmp_path / "run"
    train(run_options(epochs=2, schedule=schedule), show_progress=False, stop_after=1)  # interrupted
    assert cli("train", "--out", out, "--resume", "--epochs", 2, "--no-progress")[0] == 0
    assert cli("train", "--out", out, "--resume", "--epochs", 4, "--no-progress")[0] == 0  # extended
    lrs = _lrs(out)
    assert len(lrs) == 4 and all(np.isfinite(lrs)) and min(lrs) > 0
    # the extension follows the schedule of a run started with --epochs 4, from where it stood
    whole = train(run_options("whole", epochs=4, schedule=schedule), show_progress=False)
    np.testing.assert_allclose(lrs[2:], [r["lr"] for r in whole][2:], rtol=1e-12)


def test_resume_keeps_the_saved_settings_and_rejects_changes(run_options, tmp_path, cli):
    out = tmp_path / "run"
    train(run_options(epochs=2), show_progress=False, stop_after=1)
    code, _, err = cli("train", "--out", out, "--resume", "--lr", 0.1, "--model", "simple_conv", "--no-progress")
    assert code == 2 and "these cannot change: --model 'simple_conv' (saved: 'mlp'), --lr 0.1 (saved: 0.05)" in err
    code, printed, _ = cli("train", "--out", out, "--resume", "--device", "cpu", "--workers", 0, "--no-progress")
    assert code == 0 and "Resuming" in printed and "Epoch 2:" in printed
    assert RunConfig.load(out / "config.json").epochs == 2  # not reset to the default 3
    code, _, err = cli("train", "--out", out, "--resume", "--no-progress")  # finished: nothing to do is an error
    assert code == 2 and "has trained 2 epochs and its --epochs is 2: give --epochs N with N above 2" in err
    code, _, err = cli("train", "--out", out, "--resume", "--epochs", 1, "--no-progress")
    assert code == 2 and "give --epochs N with N above 2" in err


def test_a_run_trained_on_a_gpu_resumes_and_evaluates_on_the_cpu(run_options, tmp_path, cli):
    out = tmp_path / "run"
    train(run_options(epochs=2, device="auto"), show_progress=False, stop_after=1)
    saved = json.loads((out / "config.json").read_text())
    assert saved["device"] == "auto" and saved["resolved_device"] in ("cpu", "cuda")  # as given, and as chosen
    (out / "config.json").write_text(json.dumps({**saved, "device": "cuda", "resolved_device": "cuda"}))
    if not mt.cuda_is_available():
        for args in (("eval", out), ("train", "--out", out, "--resume", "--no-progress")):
            code, _, err = cli(*args)
            assert code == 2 and "device cuda:" in err and "pass --device cpu" in err, args
    assert cli("eval", out, "--device", "cpu")[0] == 0
    assert cli("train", "--out", out, "--resume", "--device", "cpu", "--no-progress")[0] == 0
    assert RunConfig.load(out / "config.json").resolved_device == "cpu"


# ---------------------------------------------------------------- 5, 6: no silent wrong training
@pytest.mark.parametrize("option, value, message", [
    ("lr", "nan", "--lr must be a finite number above 0, got nan"),
    ("lr", "inf", "--lr must be a finite number above 0, got inf"),
    ("momentum", 5, "--momentum must be at least 0 and below 1, got 5.0"),
    ("epochs", 0, "--epochs must be 1 or more, got 0"),
    ("batch_size", 0, "--batch-size must be 1 or more"),
    ("weight_decay", -1, "--weight-decay must be a finite number, 0 or more"),
    ("warmup", 3, "--warmup must be 0 or more and fewer than --epochs 3"),
    ("label_smoothing", 1.5, "--label-smoothing must be at least 0 and below 1"),
])
def test_settings_out_of_range_are_one_clear_line(run_options, tmp_path, cli, option, value, message, train_args):
    code, _, err = cli(*train_args(run_options(**{option: value})))
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_options_a_schedule_or_optimizer_would_ignore(run_options, tmp_path, cli, train_args):
    code, _, err = cli(*train_args(run_options(optimizer="adam", momentum=0.5)))
    assert code == 2 and "--momentum apply to --optimizer sgd only, not adam" in err
    code, _, err = cli(*train_args(run_options(schedule="onecycle", momentum=0.97)))
    assert code == 2 and "the momentum cycles over 0.92..1.02" in err

    def group_after_training(name, **changes):
        train(run_options(name, epochs=2, schedule="onecycle", **changes), show_progress=False)
        return load_checkpoint(tmp_path / name / "last.ckpt")
    # OneCycle cycles the momentum around --momentum (0: none), and rises over --warmup epochs
    plain, moving = group_after_training("m0", momentum=0.0), group_after_training("m5", momentum=0.5)
    assert plain["optimizer"]["param_groups"][0]["momentum"] == 0
    assert 0.45 <= moving["optimizer"]["param_groups"][0]["momentum"] <= 0.55
    assert not all(np.array_equal(plain["model"][k], moving["model"][k]) for k in plain["model"])
    warm = group_after_training("w1", warmup=1)  # the peak at the end of epoch 1 of 2, not at 30% of the run
    assert warm["metrics"][0]["lr"] > 0.045 > moving["metrics"][0]["lr"]


def test_a_loss_that_stops_being_finite_stops_training(run_options, tmp_path, cli, monkeypatch, train_args):
    code, _, err = cli(*train_args(run_options(lr=1e6)))
    assert code == 2 and "training stopped in epoch 1: the training loss is nan at step 9 of 9" in err
    assert "holds no checkpoint yet" in err and not (tmp_path / "run" / "best.ckpt").exists()

    real, calls = run_module.train_one_epoch, []

    def diverging_in_epoch_2(model, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            weight = next(model.parameters())
            weight.data = mt.full(weight.shape, float("inf"))
        return real(model, *args, **kwargs)
    monkeypatch.setattr(run_module, "train_one_epoch", diverging_in_epoch_2)
    code, _, err = cli(*train_args(run_options("later")))
    assert code == 2 and "training stopped in epoch 2: the training loss is nan at step 9 of 9" in err
    assert "holds the run up to epoch 1: continue it with" in err
    state = load_checkpoint(tmp_path / "later" / "best.ckpt")
    assert state["epoch"] == 1 and all(np.isfinite(v).all() for v in state["model"].values())


# ---------------------------------------------------------------- 7: CPU threads
def test_loader_and_blas_threads_share_the_cores(run_options, monkeypatch):
    assert cpu_threads(1) == (1, 0) and cpu_threads(2) == (1, 1) and cpu_threads(4) == (2, 2)
    assert cpu_threads(16) == (12, 4) and cpu_threads(8, workers=0) == (8, 0)
    seen = []
    real = run_module.train_one_epoch

    def record(model, loader, *args, **kwargs):
        seen.append(([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"], loader.num_workers))
        return real(model, loader, *args, **kwargs)
    monkeypatch.setattr(run_module, "train_one_epoch", record)
    train(run_options(epochs=1, threads=2), show_progress=False)
    (blas, workers), = seen
    assert blas and set(blas) == {1} and workers == 1


# ---------------------------------------------------------------- 8: folder: datasets
def test_non_square_images_train_every_model(tmp_path, cli, monkeypatch):
    from PIL import Image
    monkeypatch.setenv("MYTENSOR_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "wide" / cls).mkdir(parents=True)
        for i in range(10):
            image = rng.integers(0, 256, (24, 48, 3), dtype=np.uint8)  # 24 x 48: crashed every model
            Image.fromarray(image).save(tmp_path / "wide" / cls / f"{i}.png")
    (tmp_path / "wide" / "a" / "bad.png").write_bytes(b"broken")
    code, _, err = cli("train", "--dataset", f"folder:{tmp_path / 'wide'}", "--out", tmp_path / "r", "--no-progress")
    assert code == 2 and "1 image file(s) cannot be decoded" in err and "bad.png" in err
    for model in ("lenet5", "cifar_lenet"):
        code, printed, err = cli("train", "--dataset", f"folder:{tmp_path / 'wide'}", "--model", model, "--epochs", 1,
                                 "--image-size", 16, "--skip-bad-images", "--out", tmp_path / model, "--no-progress")
        assert code == 0, err
        assert "left out 1 image file(s)" in printed and "Epoch 1:" in printed
    code, _, err = cli("train", "--dataset", "folder:", "--out", tmp_path / "r", "--no-progress")
    assert code == 2 and "folder: needs the path of an image folder" in err


# ---------------------------------------------------------------- 9: run folders move
def test_a_run_folder_works_from_anywhere(tiny_folder, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tiny_folder.parent)
    assert cli("train", "--dataset", "folder:shapes", "--model", "mlp", "--epochs", 1, "--out", "runs/rel",
               "--no-progress")[0] == 0
    saved = RunConfig.load(tmp_path / "runs" / "rel" / "config.json")
    assert saved.dataset == f"folder:{tiny_folder}" and saved.out == str(tmp_path / "runs" / "rel")
    monkeypatch.chdir("/")
    assert cli("eval", tmp_path / "runs" / "rel")[0] == 0
    code, _, err = cli("eval", tmp_path / "runs" / "rel", "--data-dir", tmp_path / "elsewhere")  # honoured
    assert code == 2 and "elsewhere (--data-dir) does not exist" in err


# ---------------------------------------------------------------- 10: clear errors, clean folders
def test_broken_config_json_names_the_file_and_key(run_options, tmp_path, cli):
    out = tmp_path / "run"
    train(run_options(epochs=1), show_progress=False)
    good = json.loads((out / "config.json").read_text())
    for text, message in ((json.dumps({k: v for k, v in good.items() if k != "batch_size"}),
                           "config.json is incomplete: no 'batch_size'"),
                          (json.dumps({**good, "lrr": 1}), "config.json: unknown key(s) 'lrr'"),
                          (json.dumps({**good, "lr": "fast"}), "config.json: --lr must be a finite number"),
                          ('{"dataset": "mnist",', "config.json is not valid JSON (Expecting")):
        (out / "config.json").write_text(text)
        for args in (("eval", out), ("train", "--out", out, "--resume", "--epochs", 2, "--no-progress")):
            code, _, err = cli(*args)
            assert code == 2 and str(out / "config.json") in err and message in err, (args, err)


def test_out_of_memory_says_which_batch_size(run_options, cli, monkeypatch, train_args):
    def allocate_too_much(*args, **kwargs):  # what a too large batch does (machines that overcommit memory
        # would grant the allocation itself): NumPy's own MemoryError
        raise MemoryError("Unable to allocate 4.00 TiB for an array with shape (1099511627776,) and data type float32")
    monkeypatch.setattr(run_module, "train_one_epoch", allocate_too_much)
    code, _, err = cli(*train_args(run_options()))
    assert code == 2 and "out of memory in epoch 1 with --batch-size 8 (Unable to allocate" in err
    assert "lower --batch-size" in err and "Traceback" not in err


def test_oversized_image_in_predict(run_options, tmp_path, cli, monkeypatch):
    from PIL import Image
    train(run_options(epochs=1), show_progress=False)
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # as a 225-megapixel image against PIL's real limit
    code, _, err = cli("predict", tmp_path / "run", tmp_path / "big.png")
    assert code == 2 and "big.png: cannot decode image (Image size (10000 pixels) exceeds limit" in err


def test_traceback_is_accepted_before_and_after_the_command(tmp_path, cli):
    for args in (("--traceback", "eval", tmp_path), ("eval", tmp_path, "--traceback")):
        with pytest.raises(FileNotFoundError, match="is not a run folder"):
            main([str(a) for a in args])
    assert cli("eval", tmp_path)[0] == 2


def test_ctrl_c_says_how_to_resume(run_options, tmp_path, cli, monkeypatch, train_args):
    real, calls = run_module.train_one_epoch, []

    def interrupted_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(run_module, "train_one_epoch", interrupted_in_epoch_2)
    code, _, err = cli(*train_args(run_options()))
    out = tmp_path / "run"
    assert code == 130 and err.strip().splitlines() == [
        f"mytensor train: interrupted in epoch 2. {out} holds the run up to epoch 1: continue it with "
        f"`mytensor train --out {out} --resume`."]


def test_leftovers_of_killed_writes_are_removed_at_the_next_start(run_options, tmp_path):
    out = tmp_path / "run"
    train(run_options(epochs=2), show_progress=False, stop_after=1)
    for name in (".tmp-last.ckpt.0123456789ab", ".tmp-curves.png.ba9876543210"):
        (out / name).write_bytes(b"half a file")
    train(run_options(epochs=2), resume=True, show_progress=False)
    assert sorted(os.listdir(out)) == sorted([".lock", *RUN_FILES])
