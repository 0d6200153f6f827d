"""`mytensor.utils`: PyTorch's `torch.utils` path; `utils.data` is `mytensor.data` under that name."""
from .. import unsupported
from . import data  # noqa: F401

__getattr__ = unsupported.module_getattr("torch.utils", __name__)
