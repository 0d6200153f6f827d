"""One rank of the GPU tests of test_distributed_gpu.py, started by `python -m mytensor.distributed.run`:
`distributed_worker.py collectives|train OUT_DIR` writes OUT_DIR/RANK.npz."""
import sys
from pathlib import Path

import numpy as np

import mytensor as mt
import mytensor.distributed as dist
from mytensor import nn
from mytensor.nn.parallel import DistributedDataParallel

STEPS, BATCH = 5, 16


def collectives():
    rank, size = dist.get_rank(), dist.get_world_size()
    out = {}
    for name in ("float32", "float64", "bfloat16", "int64"):
        x = (mt.arange(1000, device="cuda") + 1000 * rank).to(getattr(mt, name))
        dist.all_reduce(x)
        out[f"sum_{name}"] = x.float().cpu().numpy()
    x = mt.full((3, 5), float(rank + 1), device="cuda").t()  # not contiguous
    dist.all_reduce(x, op=dist.ReduceOp.AVG)
    out["avg_transposed"] = x.cpu().numpy()
    x = mt.full((7,), float(rank), device="cuda")
    dist.broadcast(x, src=size - 1)
    out["broadcast"] = x.cpu().numpy()
    dist.barrier()
    return out


def model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


def data():
    rng = np.random.default_rng(0)
    return (mt.tensor(rng.normal(size=(STEPS, BATCH, 3, 8, 8)).astype(np.float32)),
            mt.tensor(rng.integers(0, 10, (STEPS, BATCH))))


def train_steps(net, params, images, labels, rows):
    """STEPS of SGD with momentum on the rows `rows` of each step's batch; the weights after them."""
    optimizer = mt.optim.SGD(params, lr=0.1, momentum=0.9)
    for step in range(STEPS):
        x, y = images[step][rows].to("cuda"), labels[step][rows].to("cuda")
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return {f"p{i}": p.detach().cpu().numpy() for i, p in enumerate(params)}


def train():
    rank, size = dist.get_rank(), dist.get_world_size()
    mt.manual_seed(rank)  # different weights on each rank: DistributedDataParallel gives them rank 0's
    net = model().to("cuda")
    share = BATCH // size
    ddp = DistributedDataParallel(net, bucket_cap_mb=0.01)  # several buckets
    return train_steps(ddp, list(net.parameters()), *data(), slice(rank * share, (rank + 1) * share))


if __name__ == "__main__":
    dist.init_process_group("nccl")
    result = {"collectives": collectives, "train": train}[sys.argv[1]]()
    np.savez(Path(sys.argv[2]) / f"{dist.get_rank()}.npz", **result)
    dist.destroy_process_group()
