"""The launcher (`python -m mytensor.distributed.run`): the environment of the processes it starts,
the exit status it forwards, and the end of the others when one fails."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def launch(tmp_path, body, *options, env=None):
    """Run `body` (Python source) in each process; (exit status, seconds taken, stdout)."""
    script = tmp_path / "child.py"
    script.write_text("import json, os, signal, sys, time\n" + body)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mytensor.distributed.run", *options, str(script), "an", "arg"],
                          env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, time.monotonic() - began, done.stdout + done.stderr


def test_each_process_gets_its_rank_its_gpu_and_nvls_off(tmp_path):
    keys = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
            "CUDA_VISIBLE_DEVICES", "NCCL_NVLS_ENABLE"]
    body = (f"with open(os.path.join({str(tmp_path)!r}, os.environ['RANK'] + '.json'), 'w') as f:\n"
            f"    json.dump({{k: os.environ.get(k) for k in {keys}}} | {{'argv': sys.argv[1:]}}, f)\n")
    code, _, out = launch(tmp_path, body, "--nproc-per-node", "2", "--nnodes", "2", "--node-rank", "1",
                          "--master-addr", "10.0.0.1", "--master-port", "29999", env={"CUDA_VISIBLE_DEVICES": "4,6"})
    assert code == 0, out
    seen = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (2, 3)]
    assert seen == [{"RANK": str(2 + r), "WORLD_SIZE": "4", "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": "2",
                     "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29999", "CUDA_VISIBLE_DEVICES": gpu,
                     "NCCL_NVLS_ENABLE": "0", "argv": ["an", "arg"]} for r, gpu in enumerate(["4", "6"])]


def test_a_failure_ends_the_others_and_its_status_is_the_launchers(tmp_path):
    body = "if os.environ['RANK'] == '1':\n    sys.exit(3)\ntime.sleep(100)\n"
    code, took, out = launch(tmp_path, body, "--nproc-per-node", "3")
    assert code == 3 and took < 60, out


def test_a_signal_is_reported_as_128_plus_its_number(tmp_path):
    body = "if os.environ['RANK'] == '0':\n    os.kill(os.getpid(), signal.SIGKILL)\ntime.sleep(100)\n"
    code, took, out = launch(tmp_path, body, "--nproc-per-node", "2")
    assert code == 128 + 9 and took < 60, out


def test_bad_options_are_refused(tmp_path):
    code, _, out = launch(tmp_path, "", "--nproc-per-node", "2", "--node-rank", "1")
    assert code == 2 and "--node-rank must be from 0 to --nnodes - 1" in out
    code, _, out = launch(tmp_path, "", "--nproc-per-node", "3", env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert code == 1 and "names 2 GPUs" in out


@pytest.mark.filterwarnings("ignore:cannot write the decoded-image cache")  # the threads share a pid, so a file
def test_rank_0_alone_writes_the_run_and_a_two_rank_run_resumes(run_options, tmp_path, capsys):
    """Two ranks of `train` as threads on the CPU: one run folder, one set of lines, and --resume."""
    from mytensor.training.run import RUN_FILES, train
    from thread_group import run_ranks
    options = run_options(gpus=2, epochs=2, workers=0)
    first = run_ranks(lambda group: train(options, show_progress=False, stop_after=1, group=group))
    assert len(first[0]) == 1 and first[1] == []
    out = capsys.readouterr().out
    assert out.count("Epoch 1:") == 1 and "a step takes 2 x 8 = 16 images" in out
    assert sorted(p.name for p in Path(options["out"]).iterdir()) == sorted(RUN_FILES + (".lock",))
    rows = run_ranks(lambda group: train({"out": options["out"]}, resume=True, show_progress=False, group=group))
    assert [r["epoch"] for r in rows[0]] == [1, 2] and rows[1] == []
    assert json.loads((Path(options["out"]) / "config.json").read_text())["gpus"] == 2


def test_gpus_without_a_launcher_is_a_clear_error(run_options):
    from mytensor.training.run import train
    with pytest.raises(ValueError, match="--gpus 2 trains in one process per GPU"):
        train(run_options(gpus=2), show_progress=False)


def test_train_with_gpus_starts_a_process_per_gpu_and_forwards_their_status(run_options, train_args):
    """On the CPU the processes stop at once, with the CLI's status for an error (the first to stop
    ends the other, which may not have said why yet)."""
    args = train_args(run_options(gpus=2, device="cpu"))
    done = subprocess.run([sys.executable, "-m", "mytensor", *args], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "training in several processes runs on GPUs" in done.stderr
