"""`torch.distributed`: several processes train one model, one GPU each, their gradients
averaged over NCCL.

    python -m mytensor.distributed.run --nproc-per-node 2 train.py    # (mytensor train --gpus 2)

    import mytensor.distributed as dist
    from mytensor.nn.parallel import DistributedDataParallel
    dist.init_process_group("nccl")                # RANK, WORLD_SIZE, ... set by the launcher
    model = DistributedDataParallel(model.to("cuda"))
"""
from .. import unsupported
from .process_group import (ReduceOp, all_reduce, barrier, broadcast, destroy_process_group,  # noqa: F401
                            get_rank, get_world_size, init_process_group, is_initialized, launched)

__getattr__ = unsupported.module_getattr("torch.distributed", __name__)
