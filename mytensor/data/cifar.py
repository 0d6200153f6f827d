"""CIFAR-10: 60,000 32x32 colour images in 10 classes (50,000 train, 10,000 test).

It is read from whichever of these copies is found first in a data folder:

    cifar-10-batches-py/   data_batch_1..5, test_batch   (the "python version": pickles)
    cifar-10-batches-bin/  data_batch_1..5.bin, test_batch.bin   (the "binary version")
    cifar-10-python.tar.gz (read without unpacking)
    cifar10-jpeg/          train/<class>/*.jpg, test/<class>/*.jpg   (an image-folder copy)
    cifar10-jpeg.tar.gz    (the same, read without unpacking; decoded once, then cached)

and otherwise downloaded (the python version, md5-checked).
"""
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from . import sources
from .dataset import ImageDataset
from .image_folder import ImageFolder, NamedBytes, cached_decode

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TAR_MD5 = "c58f30108f718f92721af3b95e74349a"
RECORD = 1 + 3 * 32 * 32  # binary version: a label byte, then 1024 red, 1024 green, 1024 blue bytes


def _batch_names(train):
    return [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]


class _ArraysOnly(pickle.Unpickler):
    """Unpickling can run arbitrary code; a CIFAR batch needs only NumPy arrays,
    so refuse everything else."""

    def find_class(self, module, name):
        numpy_array = module.split(".")[0] == "numpy" and name in ("_reconstruct", "_frombuffer", "ndarray",
                                                                   "dtype", "scalar")
        if numpy_array or (module, name) == ("_codecs", "encode"):  # Python 3's protocol-2 bytes
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def parse_pickle_batch(data, name):
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of one python-version batch."""
    try:
        batch = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"{name}: not a readable CIFAR-10 pickle batch ({type(e).__name__}: {e}); "
                         f"the file is corrupt or truncated") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{name}: expected a dict with 'data' and 'labels', got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}  # Python 2 pickles
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{name}: missing 'data' or 'labels' (keys: {sorted(batch)})")
    images, labels = np.asarray(batch["data"]), np.asarray(batch["labels"], dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise ValueError(f"{name}: 'data' should be uint8 (N, 3072), got {images.dtype} {tuple(images.shape)}")
    return _checked(images.reshape(-1, 3, 32, 32), labels, name)


def parse_binary_batch(data, name):
    """(images, labels) of one binary-version batch: N records of 3073 bytes."""
    if len(data) == 0 or len(data) % RECORD:
        raise ValueError(f"{name}: {len(data)} bytes is not a whole number of {RECORD}-byte records; "
                         f"the file is truncated or corrupt")
    records = np.frombuffer(data, np.uint8).reshape(-1, RECORD)
    return _checked(records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64), name)


def _checked(images, labels, name):
    if len(images) != len(labels):
        raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{name}: labels must be 0..9, found {labels.min()}..{labels.max()}; corrupt file?")
    return images, labels


def _read_folder(folder, names, parse):
    parts = []
    for n in names:
        path = Path(folder) / n
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-10: {path} is missing (the folder {folder} should hold "
                                    f"{', '.join(names)})")
        parts.append(parse(path.read_bytes(), str(path)))
    return parts


def _read_tar(tar_path, names):
    wanted = {f"cifar-10-batches-py/{n}": n for n in names}
    found = {}
    try:
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if member.name in wanted:
                    found[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{tar_path}: cannot read the archive ({e}); it is corrupt or truncated") from None
    missing = [m for m in wanted if m not in found]
    if missing:
        raise ValueError(f"{tar_path}: missing {', '.join(missing)}; not the CIFAR-10 python archive?")
    return [parse_pickle_batch(found[m], f"{tar_path}:{m}") for m in wanted]


def _jpeg_tar(tar_path, split):
    """(images, targets, meta) of `cifar10-jpeg/<split>/` inside the tarball, cached."""
    prefix = f"cifar10-jpeg/{split}/"
    st = os.stat(tar_path)

    def list_images():
        items = []  # (class, file name, bytes)
        try:
            with tarfile.open(tar_path) as tar:
                for m in tar:
                    parts = m.name[len(prefix):].split("/")
                    if m.isfile() and m.name.startswith(prefix) and len(parts) == 2:
                        data = tar.extractfile(m).read()
                        items.append((parts[0], parts[1], NamedBytes(data, f"{tar_path}:{m.name}")))
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ValueError(f"{tar_path}: cannot read the archive ({e}); it is corrupt or truncated") from None
        items.sort()
        classes = sorted({c for c, _, _ in items})
        if not items:
            raise ValueError(f"{tar_path}: no images under {prefix}")
        return [b for _, _, b in items], [classes.index(c) for c, _, _ in items], classes

    return cached_decode([str(Path(tar_path).resolve()), st.st_size, st.st_mtime_ns, prefix], list_images)


class CIFAR10(ImageDataset):
    """CIFAR-10 from `root` (a data folder holding one of the copies listed in the
    module docstring, or such a copy itself); None searches the usual places."""

    CLASSES, MEAN, STD = CLASSES, MEAN, STD

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=True):
        names, split = _batch_names(train), "train" if train else "test"
        kind, source = self.locate(root, download)
        self.root = source
        if kind == "jpeg-folder":
            if not (source / split).is_dir():
                raise FileNotFoundError(f"CIFAR-10: {source / split} is missing")
            folder = ImageFolder(source / split, normalization=(MEAN, STD))
            images, labels, classes = folder.images, folder.targets, folder.classes
        elif kind == "jpeg-tar":
            images, labels, meta = _jpeg_tar(source, split)
            classes = meta["classes"]
        else:
            if kind == "py-folder":
                parts = _read_folder(source, names, parse_pickle_batch)
            elif kind == "bin-folder":
                parts = _read_folder(source, [n + ".bin" for n in names], parse_binary_batch)
            else:  # "py-tar"
                parts = _read_tar(source, names)
            images = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            classes = CLASSES
        super().__init__(images, labels, classes, (MEAN, STD), transform, target_transform)

    # the copies we can read, in order of preference, and what kind each is
    COPIES = {"cifar-10-batches-py": "py-folder", "cifar-10-batches-bin": "bin-folder",
              "cifar-10-python.tar.gz": "py-tar", "cifar10-jpeg": "jpeg-folder", "cifar10-jpeg.tar.gz": "jpeg-tar"}

    @classmethod
    def locate(cls, root=None, download=True):
        """(kind, path) of the copy to read, downloading one if none exists."""
        if root is not None:
            root = Path(root)
            if (root / "data_batch_1").is_file():
                return "py-folder", root  # the batches folder itself
            if (root / "data_batch_1.bin").is_file():
                return "bin-folder", root
            if (root / "train").is_dir() and (root / "test").is_dir():
                return "jpeg-folder", root  # an image-folder copy itself
        found = sources.find(list(cls.COPIES), root)
        if found is not None:
            return cls.COPIES[found.name], found
        target = sources.download_dir(root)
        files = [(URL, "cifar-10-python.tar.gz", TAR_MD5)]
        if not download:
            sources.raise_not_found("CIFAR-10", ["cifar-10-python.tar.gz"], None, root, "downloads are off",
                                    hint=" Its unpacked folder cifar-10-batches-py/ works too.")
        sources.download_all(files, target, "CIFAR-10", root, subfolder=None,
                             hint=" Its unpacked folder cifar-10-batches-py/ works too.")
        return "py-tar", target / "cifar-10-python.tar.gz"
