"""Datasets: indexable collections of (image, label) samples, held as NumPy arrays.

A dataset answers two questions, like PyTorch's: how many samples (`__len__`) and
what is sample i (`__getitem__`). Ours add one more, `get_batch(indices)`, because
asking for 128 samples one at a time in a Python loop costs more than the training
step on a small network; a dataset whose samples sit in one array answers it with a
single fancy-indexing copy. The base class falls back to the loop, so any dataset
that only defines `__getitem__` still works with the DataLoader.
"""
import numpy as np

from ..autograd.grad_mode import no_grad
from ..ops import as_tensor
from ..tensor import Tensor


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

    def __add__(self, other):
        return ConcatDataset([self, other])


def collate(samples):
    """Stack samples field by field into NumPy arrays, keeping their structure, as PyTorch's
    `default_collate` does with tensors: [(x0, y0), (x1, y1)] -> (stack of xs, stack of ys);
    dicts key by key; strings stay a list. Python ints become int64, floats float64."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    first = samples[0]
    if isinstance(first, dict):
        return {k: collate([s[k] for s in samples]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise ValueError(f"each sample should have {len(first)} fields, got {sorted({len(s) for s in samples})}")
        return tuple(collate([s[k] for s in samples]) for k in range(len(first)))
    if isinstance(first, (str, bytes)):
        return list(samples)
    return np.stack([np.asarray(s) for s in samples])


def _as_tensor(a):
    """Tensors as they are; NumPy arrays shared, not copied; anything else array-like converted."""
    if isinstance(a, Tensor):
        return a
    if isinstance(a, np.ndarray):
        from ..creation import from_numpy
        return from_numpy(a)
    return Tensor(a)


class TensorDataset(Dataset):
    """Samples are the i-th rows of the given Tensors (or arrays), as Tensors:
    TensorDataset(x, y)[i] == (x[i], y[i]), and slices give slices."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        self.tensors = tuple(_as_tensor(t) for t in tensors)
        sizes = [t.shape[0] if t.ndim else None for t in self.tensors]
        if None in sizes or len(set(sizes)) != 1:
            raise ValueError(f"all tensors must have the same first dimension, got sizes {sizes}")

    def __len__(self):
        return self.tensors[0].shape[0]

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def get_batch(self, indices):
        """One gather per tensor, on its device, outside autograd (a batch is data)."""
        with no_grad():
            return tuple(t[as_tensor(np.asarray(indices, dtype=np.int64), device=t.device)] for t in self.tensors)


class ConcatDataset(Dataset):
    """The samples of several datasets, one after another."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} samples")
        k = int(np.searchsorted(self.cumulative_sizes, index, side="right"))
        return self.datasets[k][index - (self.cumulative_sizes[k - 1] if k else 0)]


class ImageDataset(Dataset):
    """Labelled images held in memory as uint8 (N, C, H, W), labels int64 (N,).

    uint8 because it is 4x smaller than float32 (CIFAR-10's 50,000 training images
    are 150 MB instead of 600 MB); samples and batches are converted on the way out
    to float32 in [0, 1], the form every transform and model expects.

    `transform` and `target_transform` work as torchvision datasets' do (see `__getitem__`).

    Attributes: `images`, `targets`, `classes` (names, index = label),
    `normalization` (per-channel mean, std of the training images, for
    `transforms.Normalize`), plus `image_shape` (C, H, W) and `num_classes`.
    A subclass declares the augmentation that suits its images (`transforms.augmentation`
    reads it): CROP_PADDING, the pixels of random shift (None: an eighth of the side,
    at least 2), and FLIP, whether a mirrored image keeps its class.
    """

    CROP_PADDING = None
    FLIP = True

    def __init__(self, images, targets, classes, normalization=None, transform=None, target_transform=None):
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
        self.transform, self.target_transform = transform, target_transform

    @property
    def image_shape(self):
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self):
        return len(self.classes)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        """(float32 (C, H, W) image in [0, 1], int label); with `transform` (a torchvision-style
        per-sample transform, e.g. `vision.transforms.ToTensor()`) it gets a PIL image, as there."""
        image, target = self.images[int(index)], int(self.targets[int(index)])
        if self.target_transform is not None:
            target = self.target_transform(target)
        if self.transform is None:
            return to_float(image), target
        return self.transform(to_pil(image)), target

    def get_batch(self, indices):
        if self.transform is not None or self.target_transform is not None:
            return Dataset.get_batch(self, indices)  # sample by sample, through the transforms
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
        if not hasattr(self.dataset, "get_batch"):
            return collate([self.dataset[int(i)] for i in self.indices[indices]])
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


def random_split(dataset, lengths, generator=None):
    """Split into non-overlapping Subsets of the given lengths (or fractions of the whole,
    the remainder handed out one by one from the first), in a random order drawn from
    `generator` (a `mytensor.Generator`) or the default CPU generator."""
    from ..random import default_rng
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(0 <= f <= 1 for f in lengths) and abs(sum(lengths) - 1) < 1e-9 and sum(lengths) != n:
        sizes = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        lengths = sizes
    if sum(lengths) != n or any(k < 0 for k in lengths):
        raise ValueError(f"random_split: the lengths {lengths} don't add up to the dataset's {n} samples")
    order = default_rng(generator).permutation(n)
    bounds = np.cumsum([0] + lengths)
    return [Subset(dataset, order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def to_pil(image):
    """A uint8 (C, H, W) image as a PIL image: mode L for one channel, RGB for three."""
    from PIL import Image
    return Image.fromarray(image[0] if image.shape[0] == 1 else np.ascontiguousarray(image.transpose(1, 2, 0)))


def to_float(images):
    """uint8 pixels 0..255 -> float32 0..1 (one pass, no float64 temporary)."""
    return np.multiply(images, np.float32(1 / 255), dtype=np.float32)
