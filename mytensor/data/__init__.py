"""Data: datasets as NumPy arrays, batch transforms, and a DataLoader yielding Tensors.

    from mytensor.data import DataLoader, load_dataset, transforms
    train_set = load_dataset("mnist", train=True)
    loader = DataLoader(train_set, batch_size=64, shuffle=True, seed=0,
                        transform=transforms.Normalize(*train_set.normalization))
    for images, labels in loader:   # float32 (64, 1, 28, 28) and int64 (64,) Tensors
        ...
"""
from . import transforms  # noqa: F401
from .cifar import CIFAR10  # noqa: F401
from .dataset import ConcatDataset, Dataset, ImageDataset, Subset, TensorDataset, random_split  # noqa: F401
from .device_loader import DeviceLoader, declared_augmentation  # noqa: F401
from .datasets import DATASETS, NORMALIZATION, load_dataset  # noqa: F401
from .image_folder import ImageFolder, read_image  # noqa: F401
from .loader import DataLoader, default_collate  # noqa: F401
from .mnist import MNIST, FashionMNIST  # noqa: F401
from .sampler import (BatchSampler, DistributedSampler, RandomSampler, Sampler, SequentialSampler,  # noqa: F401
                      SubsetRandomSampler, WeightedRandomSampler)
from .sources import DatasetNotFoundError  # noqa: F401
from .tiny_imagenet import TinyImageNet  # noqa: F401
