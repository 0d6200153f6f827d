"""Data-parallel training on real GPUs over NCCL (marked `gpu`): the collectives, and two processes
training a model to the weights one process reaches on their combined batches. Each test starts its
processes with `python -m mytensor.distributed.run`; those needing two GPUs skip with fewer."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mytensor as mt
from mytensor.distributed.run import free_port

ROOT = Path(__file__).resolve().parents[1]
GPUS = mt.cuda.device_count()
pytestmark = pytest.mark.gpu


def needs_gpus(n):
    if GPUS < n:
        pytest.skip(f"needs {n} GPUs, this machine has {GPUS}")


def launch(n, *command, timeout=300):
    done = subprocess.run([sys.executable, "-m", "mytensor.distributed.run", "--nproc-per-node", str(n),
                           "--master-port", str(free_port()), *command],
                          env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def worker(n, mode, tmp_path):
    launch(n, str(ROOT / "tests" / "distributed_worker.py"), mode, str(tmp_path))
    return [dict(np.load(tmp_path / f"{r}.npz")) for r in range(n)]


@pytest.mark.parametrize("n", [1, 2])
def test_all_reduce_broadcast_and_barrier_over_nccl(n, tmp_path):
    needs_gpus(n)
    results = worker(n, "collectives", tmp_path)
    base = np.arange(1000)
    for name in ("float32", "float64", "bfloat16", "int64"):
        want = sum(base + 1000 * r for r in range(n))
        for got in results:
            np.testing.assert_allclose(got[f"sum_{name}"], want, rtol=1e-2 if name == "bfloat16" else 0)
    for got in results:
        np.testing.assert_array_equal(got["avg_transposed"], np.full((5, 3), (n + 1) / 2))
        np.testing.assert_array_equal(got["broadcast"], np.full(7, n - 1.0))


@pytest.mark.parametrize("n", [1, 2])
def test_data_parallel_weights_equal_one_process_on_the_combined_batch(n, tmp_path):
    needs_gpus(n)
    import distributed_worker as w
    results = worker(n, "train", tmp_path)
    mt.manual_seed(0)  # rank 0's initial weights
    net = w.model().to("cuda")
    want = w.train_steps(net, list(net.parameters()), *w.data(), slice(None))
    for got in results:
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5)


def test_mytensor_train_on_two_gpus_writes_one_run(run_options, train_args):
    needs_gpus(2)
    options = run_options(gpus=2, device="cuda", epochs=2)
    done = subprocess.run([sys.executable, "-m", "mytensor", *train_args(options)],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Epoch 2:") == 1 and "a step takes 2 x 8 = 16 images" in done.stdout
    assert (Path(options["out"]) / "last.ckpt").exists()
