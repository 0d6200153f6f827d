"""Writers for small files in each dataset's original format (used by the data tests)."""
import gzip
import io
import struct

import numpy as np


def idx_bytes(array):
    """An IDX file's bytes for a uint8 array."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx_gz(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(idx_bytes(array)))
    return path


def write_mnist(folder, n_train=6, n_test=4, seed=0):
    """The four MNIST files with random content; returns the arrays."""
    rng = np.random.default_rng(seed)
    data = {
        "train": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train)),
        "t10k": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test)),
    }
    for split, (images, labels) in data.items():
        write_idx_gz(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx_gz(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return data


def png_bytes(array):
    """Lossless image bytes for a uint8 (H, W) or (H, W, C) array."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_image(path, array, fmt=None):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


TINY_IMAGENET_WNIDS = ["n02", "n01"]  # deliberately unsorted in wnids.txt


def write_tiny_imagenet(root, rng):
    """A Tiny ImageNet layout with 2 classes, 2 train images each (one of them a
    grayscale JPEG, as Tiny ImageNet has), 3 val images."""
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(TINY_IMAGENET_WNIDS) + "\n")
    (root / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\ttabby, tabby cat\nn03\tother\n")
    for w in TINY_IMAGENET_WNIDS:
        for i in range(2):
            shape = (64, 64) if (w, i) == ("n01", 1) else (64, 64, 3)
            write_image(root / "train" / w / "images" / f"{w}_{i}.JPEG", rng.integers(0, 256, shape, np.uint8),
                        "JPEG")
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
    lines = []
    for i, w in enumerate(["n02", "n01", "n02"]):
        write_image(root / "val" / "images" / f"val_{i}.JPEG", rng.integers(0, 256, (64, 64, 3), np.uint8), "JPEG")
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root
