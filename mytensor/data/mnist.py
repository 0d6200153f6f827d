"""MNIST and Fashion-MNIST, read from their original gzip IDX files.

IDX is a tiny format: a 4-byte magic number (two zero bytes, a type code, 0x08 for
unsigned bytes, and the number of dimensions), the size of each dimension as a
big-endian uint32, then the raw values. We check every part of it, so a corrupt or
truncated download fails with a message naming the file, not with a reshape error.
"""
import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from . import sources
from .dataset import ImageDataset


def read_idx(path, ndim):
    """The array stored in an IDX file (gzip-compressed or not), as uint8."""
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: cannot decompress it ({e}); the file is corrupt or truncated, "
                         f"delete it and download it again") from None
    expected_magic = 0x0800 + ndim
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08 or data[3] != ndim:
        magic = f"0x{data[:4].hex()}" if len(data) >= 4 else f"{len(data)} bytes"
        raise ValueError(f"{path}: bad magic number {magic}, expected 0x{expected_magic:08x} "
                         f"(IDX file of unsigned bytes with {ndim} dimension(s)); wrong or corrupt file")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated inside the header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise ValueError(f"{path}: the header promises {'x'.join(map(str, dims))} = {expected} bytes of data "
                         f"but the file holds {len(data) - header}; it is truncated or corrupt")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


class MNIST(ImageDataset):
    """Handwritten digits, 28x28 grayscale: 60,000 training and 10,000 test images.

    `root` may be the folder holding the four .gz files, or a data folder with an
    `mnist/` sub-folder; None searches the usual places (see `sources`), ending
    with the copy shipped in the package.
    """

    FOLDER, OTHER_FOLDERS = "mnist", ("MNIST/raw",)
    URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    FILES = {  # split: (images file, labels file)
        True: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        False: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }
    MD5 = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    CLASSES = [str(d) for d in range(10)]
    MEAN, STD = (0.1307,), (0.3081,)
    CROP_PADDING, FLIP = 2, False  # a mirrored 3 is not a 3
    PACKAGED = sources.PACKAGE_FILES / "mnist"

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=True):
        names = self.FILES[bool(train)]
        folder = self.locate(names, root, download)
        images_path, labels_path = (_existing(folder, n) for n in names)
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        if len(images) != len(labels):
            raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} "
                             f"holds {len(labels)} labels; one of them is from another dataset or corrupt")
        if labels.size and labels.max() >= len(self.CLASSES):
            raise ValueError(f"{labels_path}: label {labels.max()} is out of range 0..{len(self.CLASSES) - 1}")
        self.root = folder
        super().__init__(images[:, None], labels.astype(np.int64), self.CLASSES, (self.MEAN, self.STD),
                         transform, target_transform)

    @classmethod
    def locate(cls, names, root=None, download=True):
        """The folder holding `names` (each as .gz or uncompressed), downloading if needed."""
        def complete(folder):
            return all(_existing(folder, n) is not None for n in names)

        if root is not None and complete(Path(root)):
            return Path(root)
        for base in sources.search_dirs(root):
            for sub in (cls.FOLDER, *cls.OTHER_FOLDERS):
                if complete(base / sub):
                    return base / sub
        if cls.PACKAGED is not None and complete(cls.PACKAGED):
            return cls.PACKAGED
        target = sources.download_dir(root) / cls.FOLDER
        files = [(cls.URL + n, n, cls.MD5[n]) for n in names]
        if not download:
            sources.raise_not_found(cls.__name__, list(names), cls.FOLDER, root, "downloads are off")
        sources.download_all(files, target, cls.__name__, root, subfolder=cls.FOLDER)
        return target


class FashionMNIST(MNIST):
    """Zalando's clothing images in MNIST's exact format: 28x28 grayscale, 10 classes."""

    FOLDER, OTHER_FOLDERS = "fashion-mnist", ("FashionMNIST/raw", "fashion_mnist")
    URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    MD5 = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    MEAN, STD = (0.2860,), (0.3530,)
    FLIP = True  # a mirrored shoe is a shoe
    PACKAGED = None


def _existing(folder, name):
    """`folder/name`, or its uncompressed twin (`name` without .gz), or None."""
    for candidate in (Path(folder) / name, Path(folder) / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None
