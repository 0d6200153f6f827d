"""`python -m mytensor.distributed.run --nproc-per-node N [--nnodes M --node-rank K --master-addr A
--master-port P] script.py args...` (or `-m module args...`): one process per GPU of this machine,
started as torchrun starts them.

Each process gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, one
GPU in CUDA_VISIBLE_DEVICES (mytensor's `cuda` is the first visible one) and NCCL_NVLS_ENABLE=0
(NCCL's NVLink multicast off: it needs support from the driver and the NVSwitch fabric that not
every machine grants, and the collectives run without it). The launcher waits for all of them;
once one fails, it ends the others and exits with the failed one's status (128 + N for signal N).
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import time

GRACE_S = 10  # how long a process that is told to end (SIGTERM) gets before it is killed


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m mytensor.distributed.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc-per-node", type=int, required=True, help="processes (GPUs) on this machine")
    p.add_argument("--nnodes", type=int, default=1, help="machines in all (default: 1)")
    p.add_argument("--node-rank", type=int, default=0, help="this machine's place among them, from 0")
    p.add_argument("--master-addr", default="127.0.0.1", help="the address of node 0 (default: 127.0.0.1)")
    p.add_argument("--master-port", type=int, default=29500, help="a free TCP port on node 0 (default: 29500)")
    p.add_argument("-m", "--module", action="store_true", help="run the program as `python -m program`")
    p.add_argument("program", help="the script (or with -m, the module) each process runs")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    args = p.parse_args(argv)
    for ok, message in [(args.nproc_per_node >= 1, "--nproc-per-node must be 1 or more"),
                        (args.nnodes >= 1, "--nnodes must be 1 or more"),
                        (0 <= args.node_rank < args.nnodes, "--node-rank must be from 0 to --nnodes - 1"),
                        (1 <= args.master_port <= 65535, "--master-port must be from 1 to 65535")]:
        if not ok:
            p.error(message)
    return args


def child_env(args, local_rank, base=os.environ):
    """The environment of the process of `local_rank` on this node: its GPU is the local_rank-th
    of those this launcher may use (all, or those CUDA_VISIBLE_DEVICES names)."""
    visible = base.get("CUDA_VISIBLE_DEVICES")
    gpus = visible.split(",") if visible else [str(i) for i in range(args.nproc_per_node)]
    if len(gpus) < args.nproc_per_node:
        raise ValueError(f"--nproc-per-node {args.nproc_per_node} but CUDA_VISIBLE_DEVICES={visible} names "
                         f"{len(gpus)} GPUs")
    return {**base, "RANK": str(args.node_rank * args.nproc_per_node + local_rank),
            "WORLD_SIZE": str(args.nnodes * args.nproc_per_node), "LOCAL_RANK": str(local_rank),
            "LOCAL_WORLD_SIZE": str(args.nproc_per_node), "MASTER_ADDR": args.master_addr,
            "MASTER_PORT": str(args.master_port), "CUDA_VISIBLE_DEVICES": gpus[local_rank].strip(),
            "NCCL_NVLS_ENABLE": "0"}


def launch(args):
    """Run the processes; their exit status: 0, or that of the first to fail."""
    command = [sys.executable] + (["-m"] if args.module else []) + [args.program] + args.args
    envs = [child_env(args, r) for r in range(args.nproc_per_node)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # end them too (below)
    procs = [subprocess.Popen(command, env=env) for env in envs]
    try:
        return wait(procs)
    except KeyboardInterrupt:
        return 130
    finally:
        end(procs)


def wait(procs, poll_s=0.1):
    while True:
        codes = [p.poll() for p in procs]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            return failed[0] if failed[0] > 0 else 128 - failed[0]
        if all(c == 0 for c in codes):
            return 0
        time.sleep(poll_s)


def end(procs):
    """Ask the processes still running to end, and kill those that have not after GRACE_S."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def free_port():
    """A TCP port no process of this machine listens on now (for a rendezvous on one machine)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def main(argv=None):
    args = parse(argv)
    try:
        code = launch(args)
    except (ValueError, OSError) as e:
        sys.exit(f"python -m mytensor.distributed.run: error: {e}")
    sys.exit(code)


if __name__ == "__main__":
    main()
