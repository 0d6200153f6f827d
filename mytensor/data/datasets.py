"""Datasets by name: what `mytensor train --dataset NAME` loads.

    ds = load_dataset("cifar10", data_dir=None, train=True)
    ds.classes, ds.num_classes, ds.image_shape   # ['airplane', ...], 10, (3, 32, 32)
    mean, std = ds.normalization                 # for transforms.Normalize(mean, std)

Names: mnist, fashion-mnist, cifar10, tiny-imagenet, folder:PATH.

folder:PATH is an image-folder tree (see `ImageFolder`). If PATH has `train/` and
`test/` (or `val/`) sub-folders, those are the splits; the test split takes the
training split's classes, image size and normalisation. Otherwise PATH itself is
the dataset and every 10th image of each class (the 10th, 20th, ... in sorted
order) is held out as the test split. `image_size` and `skip_bad_images` are
ImageFolder's (square images of that side; leave undecodable files out).
"""
from pathlib import Path

import numpy as np

from .cifar import CIFAR10
from .dataset import Subset
from .image_folder import ImageFolder
from .mnist import MNIST, FashionMNIST
from .tiny_imagenet import TinyImageNet

DATASETS = {"mnist": MNIST, "fashion-mnist": FashionMNIST, "cifar10": CIFAR10, "tiny-imagenet": TinyImageNet}
ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10",
           "cifar": "cifar10", "tiny_imagenet": "tiny-imagenet", "tinyimagenet": "tiny-imagenet"}

# (mean, std) per channel of each dataset's training images, for transforms.Normalize
NORMALIZATION = {name: (cls.MEAN, cls.STD) for name, cls in DATASETS.items()}


def load_dataset(name, data_dir=None, train=True, download=True, image_size=None, skip_bad_images=False):
    """The named dataset's training (train=True) or test split. `data_dir` is
    searched first, then $MYTENSOR_DATA, then ~/.cache/mytensor (see `sources`)."""
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise FileNotFoundError(f"the data folder {data_dir} (--data-dir) does not exist")
    if name.startswith("folder:"):
        return load_folder(name[len("folder:"):], train, image_size, skip_bad_images)
    if image_size is not None or skip_bad_images:
        raise ValueError(f"--image-size and --skip-bad-images are for folder:PATH datasets; {name} has images of "
                         f"one size, all readable")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} or folder:PATH")
    return DATASETS[key](data_dir, train=train, download=download)


def held_out(targets, every=10):
    """Boolean mask of the test images: every `every`-th image of each class."""
    targets = np.asarray(targets)
    mask = np.zeros(len(targets), dtype=bool)
    for c in np.unique(targets):
        mask[np.flatnonzero(targets == c)[every - 1::every]] = True
    return mask


def load_folder(path, train=True, image_size=None, skip_bad_images=False):
    if not path:
        raise ValueError("folder: needs the path of an image folder, as in folder:path/to/images")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"folder:{path}: no such folder")
    test_dir = next((path / s for s in ("test", "val") if (path / s).is_dir()), None)
    if (path / "train").is_dir() and test_dir is not None:
        train_set = ImageFolder(path / "train", size=image_size, skip_bad=skip_bad_images)
        if train:
            return train_set
        return ImageFolder(test_dir, size=train_set.image_shape[1:], classes=train_set.classes,
                           normalization=train_set.normalization, skip_bad=skip_bad_images)
    full = ImageFolder(path, size=image_size, skip_bad=skip_bad_images)
    test = held_out(full.targets)
    return Subset(full, np.flatnonzero(~test if train else test))
