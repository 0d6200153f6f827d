"""`torch.nn.parallel`: `DataParallel` for programs that wrap their model in it, and
`DistributedDataParallel` (from `mytensor.distributed`) for one process per GPU.

mytensor runs a model on one device per process, so `DataParallel` runs the wrapped module on the
whole batch where it is; that is what PyTorch's does on a single GPU or on the CPU, state-dict keys
(`module.` prefix) included. Several GPUs train through DistributedDataParallel, one process each.
"""
from .. import unsupported
from ..distributed.data_parallel import DistributedDataParallel  # noqa: F401
from .modules.module import Module

__getattr__ = unsupported.module_getattr("torch.nn.parallel", __name__)


class DataParallel(Module):
    """`module` on the whole batch, on its own device; `.module` is the wrapped module."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        if device_ids is not None and len(device_ids) > 1:
            raise unsupported.error("torch.nn.DataParallel", f"across devices {list(device_ids)} is not supported "
                                                             "by mytensor (it runs a model on one device; "
                                                             "use DistributedDataParallel, one process per GPU)")
        self.module = module

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)
