"""Datasets: indexable collections of (image, label) samples, held as NumPy arrays.

A dataset answers two questions, like PyTorch's: how many samples (`__len__`) and
what is sample i (`__getitem__`). Ours add one more, `get_batch(indices)`, because
asking for 128 samples one at a time in a Python loop costs more than the training
step on a small network; a dataset whose samples sit in one array answers it with a
single fancy-indexing copy. The base class falls back to the loop, so any dataset
that only defines `__getitem__` still works with the DataLoader.
"""
import numpy as np


class Dataset:
    """Abstract dataset. Subclasses define `__getitem__` and `__len__`, and
    should override `get_batch` when they can gather many samples at once."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def get_batch(self, indices):
        """Samples at `indices`, stacked field by field: a tuple of arrays whose
        first axis has len(indices) entries. The slow, general path."""
        return collate([self[int(i)] for i in indices])


def collate(samples):
    """Turn [(x0, y0), (x1, y1), ...] into (stack of xs, stack of ys)."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    if not isinstance(samples[0], (tuple, list)):
        return np.stack([np.asarray(s) for s in samples])
    return tuple(np.stack([np.asarray(s[k]) for s in samples]) for k in range(len(samples[0])))


def _as_numpy(a):
    """Accept NumPy arrays, mytensor Tensors and anything array-like."""
    return a.numpy() if hasattr(a, "numpy") and not isinstance(a, np.ndarray) else np.asarray(a)


class TensorDataset(Dataset):
    """Samples are the i-th rows of the given arrays (or Tensors), e.g.
    TensorDataset(x, y)[i] == (x[i], y[i])."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = tuple(_as_numpy(a) for a in arrays)
        n = len(self.arrays[0])
        for a in self.arrays:
            if len(a) != n:
                raise ValueError(f"all arrays must have the same first dimension, got "
                                 f"{[len(b) for b in self.arrays]}")

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def get_batch(self, indices):
        return tuple(a[indices] for a in self.arrays)


class ImageDataset(Dataset):
    """Labelled images held in memory as uint8 (N, C, H, W), labels int64 (N,).

    uint8 because it is 4x smaller than float32 (CIFAR-10's 50,000 training images
    are 150 MB instead of 600 MB); samples and batches are converted on the way out
    to float32 in [0, 1], the form every transform and model expects.

    Attributes: `images`, `targets`, `classes` (names, index = label),
    `normalization` (per-channel mean, std of the training images, for
    `transforms.Normalize`), plus `image_shape` (C, H, W) and `num_classes`.
    """

    def __init__(self, images, targets, classes, normalization=None):
        images = np.asanyarray(images)  # a np.memmap stays one: decoded caches are memory-mapped
        targets = np.asarray(targets, dtype=np.int64)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} labels")
        if len(targets) and (targets.min() < 0 or targets.max() >= len(classes)):
            raise ValueError(f"labels must lie in [0, {len(classes)}), got [{targets.min()}, {targets.max()}]")
        self.images, self.targets, self.classes = images, targets, list(classes)
        c = images.shape[1]
        self.normalization = normalization or ((0.5,) * c, (0.5,) * c)

    @property
    def image_shape(self):
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self):
        return len(self.classes)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return to_float(self.images[index]), int(self.targets[index])

    def get_batch(self, indices):
        return to_float(self.images[indices]), self.targets[indices]

    def __repr__(self):
        return (f"{type(self).__name__}({len(self)} images of shape {self.image_shape}, "
                f"{self.num_classes} classes)")


class Subset(Dataset):
    """The samples of `dataset` at `indices`, e.g. a held-out split. Keeps the
    parent's fast `get_batch` and its class names and normalisation."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, np.asarray(indices, dtype=np.int64)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def get_batch(self, indices):
        return self.dataset.get_batch(self.indices[indices])

    @property
    def targets(self):
        return self.dataset.targets[self.indices]

    @property
    def images(self):
        return self.dataset.images[self.indices]

    def __getattr__(self, name):  # classes, normalization, image_shape, ... of the parent
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def to_float(images):
    """uint8 pixels 0..255 -> float32 0..1 (one pass, no float64 temporary)."""
    return np.multiply(images, np.float32(1 / 255), dtype=np.float32)
