"""`torch.nn.parallel`: `DataParallel` for programs that wrap their model in it.

mytensor runs a model on one device, so `DataParallel` runs the wrapped module on the whole
batch where it is; that is what PyTorch's does on a single GPU or on the CPU, state-dict keys
(`module.` prefix) included. Splitting a batch across several GPUs is not supported.
"""
from .. import unsupported
from .modules.module import Module

__getattr__ = unsupported.module_getattr("torch.nn.parallel", __name__)


class DataParallel(Module):
    """`module` on the whole batch, on its own device; `.module` is the wrapped module."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        if device_ids is not None and len(device_ids) > 1:
            raise unsupported.error("torch.nn.DataParallel", f"across devices {list(device_ids)} is not supported "
                                                             "by mytensor (it runs a model on one device)")
        self.module = module

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)
