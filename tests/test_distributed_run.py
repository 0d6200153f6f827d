"""The launcher (`python -m mytensor.distributed.run`): the environment of the processes it starts,
the exit status it forwards, and the end of the others when one fails."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

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
    body = f"print(json.dumps({{k: os.environ.get(k) for k in {keys}}} | {{'argv': sys.argv[1:]}}))\n"
    code, _, out = launch(tmp_path, body, "--nproc-per-node", "2", "--nnodes", "2", "--node-rank", "1",
                          "--master-addr", "10.0.0.1", "--master-port", "29999", env={"CUDA_VISIBLE_DEVICES": "4,6"})
    assert code == 0, out
    seen = sorted((json.loads(line) for line in out.splitlines() if line.startswith("{")), key=lambda e: e["RANK"])
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
