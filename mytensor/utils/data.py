"""`mytensor.utils.data`: `torch.utils.data`'s names, from `mytensor.data`.

    from mytensor.utils.data import DataLoader, Dataset, TensorDataset, random_split
"""
from .. import unsupported
from ..data.dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split  # noqa: F401
from ..data.loader import DataLoader, default_collate  # noqa: F401
from ..data.sampler import (BatchSampler, DistributedSampler, RandomSampler, Sampler, SequentialSampler,  # noqa: F401
                            SubsetRandomSampler, WeightedRandomSampler)

__getattr__ = unsupported.module_getattr("torch.utils.data", __name__)
