"""DeviceLoader: the whole dataset in device memory, each batch gathered and augmented there.

The DataLoader crops, flips and normalises batches in host threads and copies each one to
the GPU. Here the uint8 images go to the device once (CIFAR-10's 50,000: 150 MB) and a batch
is one call of `backend.augment_images`: the gather, shift, flip, cutout, normalisation and
conversion to float in one pass. The epoch's randomness (order, shifts, flips, cutout places)
is drawn on the device when the epoch starts, from a generator seeded by (seed, epoch) alone,
so a resumed run repeats it, a batch costs the host one launch, and nothing waits for the
device. On the CPU the same code runs on NumPy.

    loader = DeviceLoader(train_set, batch_size=1024, shuffle=True, device="cuda", translate=2,
                          padding_mode="reflect", flip="alternating")
    for images, labels in loader:   # float32 (1024, 3, 32, 32) and int64 (1024,) Tensors on the GPU
        ...
"""
import numpy as np

from .. import dtypes
from ..backend import get_backend
from ..ops import as_tensor
from .sampler import shard_positions
from .transforms import Normalize, crop_padding

FLIPS = (None, "random", "alternating")
PADDING_MODES = ("zeros", "reflect")
_EPOCH, _SIDES = 0, 1  # the keys of the two random streams


def _seed(seed, *key):
    """An integer seed (63 bits) for the stream (seed, *key): SeedSequence keeps the streams apart."""
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0]) >> 1


def declared_augmentation(dataset):
    """`DeviceLoader` options for the augmentation a dataset declares (as `transforms.augmentation`):
    shifts by its crop padding with zeros coming in, and random flips where a mirrored image keeps
    its class."""
    return {"translate": crop_padding(dataset), "padding_mode": "zeros", "flip": "random" if dataset.FLIP else None}


class DeviceLoader:
    """Batches (images, labels) of an image dataset (uint8 `images` (N, C, H, W), `targets`,
    `normalization`) held on `device`, normalised by the dataset's mean and std.

    translate: each image moves by (dy, dx), both drawn from [-translate, translate] every epoch;
    padding_mode: what comes in from beyond the border, "zeros" (black pixels, as the padding
        of `transforms.RandomCrop`) or "reflect" (the image mirrored across it);
    flip: None, "random" (each image with probability 1/2, drawn anew each epoch) or
        "alternating" (airbench's: each image gets a random side once, and every other epoch
        shows the other, so each pair of epochs sees both sides of every image);
    cutout: the side of a square set to 0 (the mean colour) around a random centre, 0 for none;
    dtype: of the images yielded (float32; bfloat16 or float16 halve the memory traffic);
    num_replicas, rank: yield only rank `rank`'s share of each epoch, as DistributedSampler's (every
        rank draws the whole epoch alike and keeps its places of it).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=0, device=None, translate=0,
                 padding_mode="zeros", flip=None, cutout=0, dtype=dtypes.float32, num_replicas=1, rank=0):
        images = np.ascontiguousarray(dataset.images)  # decoded once (a Subset gathers its images here)
        _, _, h, w = images.shape
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= translate < min(h, w):
            raise ValueError(f"translate must be at least 0 and below the image side {min(h, w)}, got {translate}")
        if padding_mode not in PADDING_MODES or flip not in FLIPS:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES} and flip one of {FLIPS}, got "
                             f"{padding_mode!r} and {flip!r}")
        if not 0 <= cutout <= min(h, w):
            raise ValueError(f"cutout must be from 0 to the image side {min(h, w)}, got {cutout}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, int(batch_size), shuffle, drop_last
        self.seed, self.device, self.epoch = int(seed), device, 0
        self.translate, self.reflect, self.flip, self.cutout = translate, padding_mode == "reflect", flip, cutout
        self.dtype = dtypes.get_dtype(dtype).np
        self.backend = get_backend(device or "cpu")
        self.images = self.backend.asarray(images)  # uploaded once
        self.targets = self.backend.asarray(np.asarray(dataset.targets, dtype=np.int64))
        self.normalize = Normalize(*dataset.normalization)
        std, mean = np.array(self.normalize.std, np.float32), np.array(self.normalize.mean, np.float32)
        self.scale = self.backend.asarray(1 / (255 * std))  # pixel * scale + shift = (pixel / 255 - mean) / std
        self.shift = self.backend.asarray(-mean / std)
        self.positions = None if num_replicas == 1 else self.backend.asarray(
            shard_positions(len(images), num_replicas, rank))

    def __len__(self):
        n = len(self.images) if self.positions is None else len(self.positions)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch):
        """Choose the epoch (its order and augmentation) of the next iteration."""
        self.epoch = int(epoch)

    def state_dict(self):
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state):
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def epoch_draws(self, epoch):
        """(order, shifts, flips, cutout corners) of an epoch, one row per position in it, on the
        device; None for what the loader does not do."""
        xp, n = self.backend.xp, len(self.images)
        _, _, h, w = self.images.shape
        rng = self.backend.generator(_seed(self.seed, _EPOCH, epoch))
        order = xp.argsort(rng.random(n)) if self.shuffle else xp.arange(n)
        shifts = None
        if self.translate:
            shifts = (rng.integers(0, 2 * self.translate + 1, size=(n, 2)) - self.translate).astype(np.int32)
        flips = None
        if self.flip == "random":
            flips = rng.random(n) < 0.5
        elif self.flip == "alternating":  # each image's first side depends on the seed alone
            sides = self.backend.generator(_seed(self.seed, _SIDES)).random(n) < 0.5
            flips = xp.logical_xor(sides[order], epoch % 2 == 1)
        corners = None
        if self.cutout:
            centres = xp.stack([rng.integers(0, h, size=n), rng.integers(0, w, size=n)], axis=1)
            corners = (centres - self.cutout // 2).astype(np.int32)
        draws = order, shifts, flips, corners
        return draws if self.positions is None else tuple(None if a is None else a[self.positions] for a in draws)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        order, shifts, flips, corners = self.epoch_draws(epoch)
        for b in range(len(self)):
            rows = slice(b * self.batch_size, (b + 1) * self.batch_size)
            index = order[rows]
            part = [None if a is None else a[rows] for a in (shifts, flips, corners)]
            images = self.backend.augment_images(self.images, index, self.scale, self.shift, self.dtype, part[0],
                                                 part[1], self.reflect, part[2], self.cutout)
            yield as_tensor(images, device=self.device), as_tensor(self.targets[index], device=self.device)

    def normalized(self, index):
        """The images at positions `index` of the dataset, normalised as the batches are and not
        augmented, float32 on the loader's device: one launch of the batches' kernel."""
        index = self.backend.asarray(np.asarray(index, dtype=np.int64))
        return as_tensor(self.backend.augment_images(self.images, index, self.scale, self.shift, np.float32),
                         device=self.device)

    def prepare(self, images):
        """A NumPy batch (N, C, H, W) of float32 images in [0, 1] normalised as this loader's, a
        Tensor on its device (for predicting on new images)."""
        out = self.normalize(np.asarray(images, dtype=np.float32)).astype(self.dtype, copy=False)
        return as_tensor(out, device=self.device)

    def __repr__(self):
        return (f"DeviceLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"translate={self.translate}, flip={self.flip!r}, cutout={self.cutout}, device={self.device!r})")
