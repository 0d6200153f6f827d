"""The default process group and the collectives on it, as `torch.distributed` has them.

A process group is any object with `rank`, `size` and, on backend arrays in place,
`all_reduce(array, stream=None)` (the sum over the ranks), `broadcast(array, src, stream=None)`,
`barrier()` and `close()`. `init_process_group` makes the NCCL one (`nccl.NcclGroup`) from the
environment the launcher sets; the functions below take another through `group=`.
"""
import dataclasses
import datetime
import os

DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)  # PyTorch's, for the rendezvous
_default = None


class ReduceOp:
    """What `all_reduce` makes of the ranks' tensors: their sum, or their mean (floating point)."""
    SUM = "sum"
    AVG = "avg"


@dataclasses.dataclass(frozen=True)
class Environment:
    """Who this process is, from the variables that `mytensor.distributed.run` (or torchrun) sets."""
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def environment(rank=-1, world_size=-1):
    """The Environment of this process; `rank` and `world_size`, when given, replace RANK and
    WORLD_SIZE. A variable missing or out of range is an error that names it."""
    world_size = world_size if world_size >= 0 else _env_int("WORLD_SIZE", 1)
    rank = rank if rank >= 0 else _env_int("RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK {rank} must be from 0 to WORLD_SIZE - 1 = {world_size - 1}")
    local_rank = _env_int("LOCAL_RANK", 0)
    addr = os.environ.get("MASTER_ADDR") or _missing("MASTER_ADDR")
    port = _env_int("MASTER_PORT", 1)
    if port > 65535:
        raise ValueError(f"MASTER_PORT={port} is not a TCP port (1 to 65535)")
    return Environment(rank, world_size, local_rank, addr, port)


def _env_int(name, low):
    text = os.environ.get(name)
    if text is None:
        _missing(name)
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a whole number") from None
    if value < low:
        raise ValueError(f"{name}={value} must be {low} or more")
    return value


def _missing(name):
    raise RuntimeError(f"environment variable {name} is not set: start each process with "
                       f"`python -m mytensor.distributed.run` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR "
                       f"and MASTER_PORT), or set them yourself")


def launched():
    """Whether this process is one of several that a launcher started (WORLD_SIZE above 1)."""
    return int(os.environ.get("WORLD_SIZE") or 1) > 1


def init_process_group(backend="nccl", init_method=None, timeout=None, world_size=-1, rank=-1):
    """Join the other processes: rank 0 hands them NCCL's id over TCP at MASTER_ADDR:MASTER_PORT
    and all build one communicator. Call it once, before any collective or DistributedDataParallel."""
    global _default
    if _default is not None:
        raise RuntimeError("trying to initialize the default process group twice")
    if backend != "nccl":
        raise ValueError(f"backend {backend!r}: mytensor's process groups run over NCCL, backend='nccl'")
    if init_method not in (None, "env://"):
        raise ValueError(f"init_method {init_method!r}: mytensor reads the environment, init_method='env://'")
    from .nccl import NcclGroup
    _default = NcclGroup(environment(rank, world_size), (timeout or DEFAULT_TIMEOUT).total_seconds())


def default_group(group=None):
    """`group`, or the default one; an error when neither exists."""
    if group is None and _default is None:
        raise RuntimeError("Default process group has not been initialized, please make sure to call "
                           "init_process_group.")
    return group if group is not None else _default


def is_initialized():
    return _default is not None


def get_rank(group=None):
    return default_group(group).rank


def get_world_size(group=None):
    return default_group(group).size


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Replace `tensor` on every rank by the sum (or the mean) of it over the ranks."""
    group = default_group(group)
    _no_async(async_op)
    if op not in (ReduceOp.SUM, ReduceOp.AVG):
        raise ValueError(f"op {op!r}: mytensor's all_reduce takes ReduceOp.SUM or ReduceOp.AVG")
    if op == ReduceOp.AVG and not tensor.is_floating_point():
        raise TypeError(f"ReduceOp.AVG needs a floating-point tensor, got {tensor.dtype}")
    group.all_reduce(tensor._data)
    if op == ReduceOp.AVG:
        tensor._data *= 1 / group.size


def broadcast(tensor, src, group=None, async_op=False):
    """Replace `tensor` on every rank by rank `src`'s."""
    _no_async(async_op)
    default_group(group).broadcast(tensor._data, src)


def barrier(group=None, async_op=False):
    """Return once every rank has reached its barrier."""
    _no_async(async_op)
    default_group(group).barrier()


def destroy_process_group(group=None):
    global _default
    default_group(group).close()
    if group is None or group is _default:
        _default = None


def _no_async(async_op):
    if async_op:
        raise ValueError("async_op=True: mytensor's collectives are queued on the device's stream and return "
                         "at once, so there is no work object to wait for; pass async_op=False")
