"""`mytensor.utils.data`: `torch.utils.data`'s names, from `mytensor.data`.

    from mytensor.utils.data import DataLoader, Dataset, TensorDataset
"""
from .. import unsupported
from ..data.dataset import Dataset, Subset, TensorDataset  # noqa: F401
from ..data.loader import DataLoader  # noqa: F401

__getattr__ = unsupported.module_getattr("torch.utils.data", __name__)
