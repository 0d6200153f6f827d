"""`mytensor train` killed with SIGKILL at random moments, many of them while a file of
the run folder is being written, and continued with --resume each time: the folder is
always loadable and resumable, and the run ends with the weights of one never killed."""
import os
import random
import secrets
import signal
import subprocess
import sys
import time

import numpy as np

from mytensor.training import load_checkpoint, run as run_module
from mytensor.training.run import RunConfig, train

KILLS = 20
EPOCHS = 20
# `mytensor train` with every fsync 20 ms slower, so that a write is in progress long enough for the
# watcher below to see its temporary file on any machine (on a fast one a write lasts well under 1 ms)
SLOW_WRITES = ("import os, sys, time\n_fsync = os.fsync\nos.fsync = lambda fd: (time.sleep(0.02), _fsync(fd))[1]\n"
               "from mytensor.cli import main\nmain(sys.argv[1:])")


def _kill_while_writing(proc, out, nth):
    """SIGKILL `proc` once it has begun its nth atomic write in `out` (seen as a
    temporary file); True if it was killed so, False if it ended first."""
    seen = set()
    while proc.poll() is None:
        seen.update(name for name in os.listdir(out) if name.startswith(".tmp-"))
        if len(seen) >= nth:
            proc.send_signal(signal.SIGKILL)
            return True
        time.sleep(0.001)
    return False


def _wait_until_training(proc, out):
    """Until `proc` holds the run folder's lock: its start-up (imports, data), which takes
    seconds on some machines, is over, so the random moments below fall in training."""
    lock = out / ".lock"
    while proc.poll() is None:
        if lock.exists() and f"pid {proc.pid} " in lock.read_text():
            return
        time.sleep(0.002)


def test_sigkill_at_random_moments_then_resume(run_options, train_args, tmp_path, monkeypatch):
    seed = int(os.environ.get("MYTENSOR_TEST_SEED") or secrets.randbits(32))
    print(f"random seed {seed}: rerun with MYTENSOR_TEST_SEED={seed}")
    rng = random.Random(seed)
    options = run_options("killed", epochs=EPOCHS)
    out = tmp_path / "killed"
    monkeypatch.setattr(run_module, "plot_curves", lambda rows, path: None)  # in this process only
    started = time.perf_counter()
    reference = train(run_options("whole", epochs=EPOCHS), show_progress=False)  # (also fills the image cache)
    # kills land within about an epoch of training (the slowed writes included), so that 20 of
    # them fall before the run ends on a fast machine as on a slow one
    epoch_s = (time.perf_counter() - started) / EPOCHS + 0.1

    kills = during_writes = done = 0
    while kills < KILLS and done < EPOCHS:
        resuming = (out / "config.json").exists()
        args = train_args({"out": out}, "--resume") if resuming else train_args(options)
        proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITES, *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        if kills % 2 and out.exists():
            during_writes += _kill_while_writing(proc, out, nth=rng.randint(1, 7))
        else:
            _wait_until_training(proc, out)
            time.sleep(rng.uniform(0.01, epoch_s))
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        assert proc.returncode in (-signal.SIGKILL, 0), err
        kills += proc.returncode == -signal.SIGKILL
        if (out / "config.json").exists():  # everything a killed run left can be read
            RunConfig.load(out / "config.json")
        if (out / "last.ckpt").exists():
            done = load_checkpoint(out / "last.ckpt")["epoch"]
    print(f"{kills} kills, {during_writes} of them during a write, {done} epochs done")
    assert kills >= KILLS and during_writes >= KILLS // 4

    resumed = train({"out": str(out)}, resume=True, show_progress=False)
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]
    final, whole = load_checkpoint(out / "last.ckpt"), load_checkpoint(tmp_path / "whole" / "last.ckpt")
    for k, v in whole["model"].items():
        np.testing.assert_array_equal(final["model"][k], v, err_msg=k)
    assert [r["test_acc"] for r in resumed] == [r["test_acc"] for r in reference]
