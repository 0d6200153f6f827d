"""Datasets of image files: a folder per class, decoded once and cached.

    root/cat/001.jpg, root/cat/002.png, root/dog/xyz.jpeg, ...  ->  classes ['cat', 'dog']

Decoding tens of thousands of JPEGs takes a while (Tiny ImageNet: about a minute), so
the decoded uint8 array is saved as .npy files in the cache folder
(`~/.cache/mytensor/decoded/`, or `$MYTENSOR_CACHE/decoded/`), under a name derived
from the files' paths, sizes and modification times: a changed folder is decoded
afresh, an unchanged one loads in seconds. The cache is memory-mapped, so a large
dataset is read from disk as batches need it instead of all held in memory.

Every image becomes the same shape: converted to `mode` ("RGB": grayscale, palette
and RGBA images get three channels; "L": one channel), scaled (bilinear) to cover
`size` and cropped to it about its centre, so no image is stretched. `size` is
(H, W) or N for N x N; by default a square with the shorter side of the first
image (in sorted order), since the models expect square images.

A file that cannot be decoded stops nothing by itself: every one of them is
named in a single error (or, with `skip_bad`, listed and left out).
"""
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import sources
from .dataset import ImageDataset, to_float

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CACHE_VERSION = 2  # bump when the decoding changes, so old caches are not reused
SHOWN_BAD = 20  # bad files named one per line in an error; the rest are counted


class NamedBytes(bytes):
    """An image file's bytes read from an archive, with the name an error gives it."""

    def __new__(cls, data, name):
        self = super().__new__(cls, data)
        self.name = name
        return self


def _open(source, mode):
    """A PIL image from a path or bytes, converted to `mode` (the file is closed after)."""
    from PIL import Image, UnidentifiedImageError
    is_path = isinstance(source, (str, Path))
    try:
        with Image.open(source if is_path else io.BytesIO(source)) as img:
            if img.mode in ("P", "PA", "LA") and mode == "RGB":
                img = img.convert("RGBA")  # palette/alpha via RGBA avoids PIL's transparency warning
            return img.convert(mode)  # a decoded copy, even when the mode already matches
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        name = source if is_path else getattr(source, "name", "image bytes")
        raise ValueError(f"{name}: cannot decode image ({e})") from None


class BadImagesError(ValueError):
    """Images that cannot be decoded, all of them: `bad` holds (index, message) pairs."""

    def __init__(self, bad):
        self.bad = sorted(bad)
        lines = [message for _, message in self.bad[:SHOWN_BAD]]
        if len(self.bad) > SHOWN_BAD:
            lines.append(f"... and {len(self.bad) - SHOWN_BAD} more")
        super().__init__(f"{len(self.bad)} image file(s) cannot be decoded; fix or remove them, or pass "
                         f"--skip-bad-images to leave them out:\n  " + "\n  ".join(lines))


def decode(source, mode="RGB", size=None):
    """One image as uint8 (C, H, W); `size` (H, W): scaled to cover it, then cropped to it."""
    from PIL import Image
    img = _open(source, mode)
    if size is not None and img.size != (size[1], size[0]):
        h, w = size
        scale = max(h / img.height, w / img.width)
        cover = max(w, round(img.width * scale)), max(h, round(img.height * scale))
        left, top = (cover[0] - w) // 2, (cover[1] - h) // 2
        img = img.resize(cover, Image.BILINEAR).crop((left, top, left + w, top + h))
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def read_image(path, image_shape):
    """An image file as a model input: float32 (C, H, W) in [0, 1], converted and
    scaled and cropped to `image_shape` (C, H, W) as training images were, as
    `mytensor predict` needs."""
    c, h, w = image_shape
    return to_float(decode(path, "L" if c == 1 else "RGB", (h, w)))


def decode_all(items, mode="RGB", size=None, out=None, workers=None):
    """Decode many images (paths or bytes) into one uint8 (N, C, H, W) array.
    Threads decode in parallel: Pillow releases the GIL while it decodes.
    Raises BadImagesError naming every image that failed, once all were tried."""
    size = size or square_size(items, mode)
    channels = 1 if mode == "L" else 3
    if out is None:
        out = np.empty((len(items), channels, *size), np.uint8)
    bad = []

    def work(start, stop):
        for i in range(start, stop):
            try:
                out[i] = decode(items[i], mode, size)
            except ValueError as e:
                bad.append((i, str(e)))

    chunk = 256
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(work, s, min(s + chunk, len(items))) for s in range(0, len(items), chunk)]
        for f in futures:
            f.result()
    if bad:
        raise BadImagesError(bad)
    return out


def square_size(items, mode="RGB"):
    """(S, S), S the shorter side of the first image that decodes (decode_all names
    the others); (1, 1) if none does."""
    for source in items:
        try:
            w, h = _open(source, mode).size
            return min(h, w), min(h, w)
        except ValueError:
            continue
    return 1, 1


def cached_decode(fingerprint, list_images, mode="RGB", size=None, cache=True, skip_bad=False):
    """Decoded images, from the cache entry for `fingerprint` (a JSON-able
    description of the input files) when there is one.

    list_images() -> (sources, labels, classes) is called only on a cache miss;
    sources are paths or bytes. Returns (images, targets, meta), meta holding
    "classes" and the per-channel "mean" and "std" (from `channel_stats`).
    With `skip_bad`, images that cannot be decoded are left out, their indices
    in meta["left_out"].
    """
    if isinstance(size, int):
        size = (size, size)
    key = json.dumps([CACHE_VERSION, mode, size and list(size), skip_bad, fingerprint], sort_keys=True)
    folder = sources.cache_dir() / "decoded" / hashlib.sha1(key.encode()).hexdigest()[:20]
    if cache and (folder / "meta.json").exists():
        try:
            meta = json.loads((folder / "meta.json").read_text())
            return np.load(folder / "images.npy", mmap_mode="r"), np.load(folder / "targets.npy"), meta
        except (OSError, ValueError):  # a damaged cache entry: decode again
            shutil.rmtree(folder, ignore_errors=True)

    paths, labels, classes = list_images()
    labels = np.asarray(labels, dtype=np.int64)
    if not len(paths):
        raise ValueError("no images to decode")
    size = size or square_size(paths, mode)
    try:
        return _decode_and_cache(folder, paths, labels, classes, mode, size, cache)
    except BadImagesError as e:
        if not skip_bad or len(e.bad) == len(paths):
            raise
        left_out = [i for i, _ in e.bad]
        keep = np.setdiff1d(np.arange(len(paths)), left_out)
        return _decode_and_cache(folder, [paths[i] for i in keep], labels[keep], classes, mode, size, cache,
                                 left_out)


def _decode_and_cache(folder, paths, labels, classes, mode, size, cache, left_out=()):
    """Decode into a temporary folder beside the cache entry, renamed to it when
    complete; whatever goes wrong, the temporary folder is removed."""
    shape = (len(paths), 1 if mode == "L" else 3, *size)
    if not cache:
        images = decode_all(paths, mode, size)
        return images, labels, {"classes": classes, "left_out": list(left_out), **channel_stats(images)}
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        # a folder of its own for each writer, so that processes (or threads) decoding the same
        # data at once never write into one file
        tmp = Path(tempfile.mkdtemp(prefix=f"{folder.name}.tmp-", dir=folder.parent))
        # decode straight into the file on disk: a big dataset is never in memory twice
        images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, shape)
        decode_all(paths, mode, size, out=images)
        images.flush()
        np.save(tmp / "targets.npy", labels)
        meta = {"classes": classes, "left_out": list(left_out), **channel_stats(images)}
        (tmp / "meta.json").write_text(json.dumps(meta))  # written last: marks the entry complete
        del images
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "meta.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another writer finished first, with the same images
    except OSError as e:  # e.g. a read-only home: work without the cache
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        warnings.warn(f"cannot write the decoded-image cache in {folder.parent} ({e}); "
                      f"set MYTENSOR_CACHE to a writable folder to make the next run faster")
        return _decode_and_cache(folder, paths, labels, classes, mode, size, False, left_out)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return np.load(folder / "images.npy", mmap_mode="r"), labels, meta


def channel_stats(images, chunk=512):
    """Per-channel mean and std of uint8 images, in [0, 1] units, computed in
    chunks so a large (memory-mapped) dataset needs no float copy of itself."""
    c = images.shape[1]
    total, total_sq, count = np.zeros(c), np.zeros(c), 0
    for s in range(0, len(images), chunk):
        x = np.asarray(images[s:s + chunk], dtype=np.float64) / 255
        total += x.sum(axis=(0, 2, 3))
        total_sq += (x * x).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean * mean, 0))
    return {"mean": mean.round(4).tolist(), "std": np.maximum(std, 1e-3).round(4).tolist()}


def _fingerprint(paths):
    """What identifies a set of files: their paths, sizes and modification times."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def find_images(root, classes=None):
    """(classes, [(path, label)]) of a root/<class>/.../<image> tree, sorted.
    `classes` fixes the class list (and so the labels), e.g. to the training
    folder's, so a test folder missing a class still gets matching labels."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    folders = sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))
    if classes is not None:
        unknown = [f for f in folders if f not in classes]
        if unknown:
            raise ValueError(f"{root}: class folder(s) {unknown} are not among the classes {list(classes)}")
    samples = []
    for name in folders:
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames.sort()
            samples += [(os.path.join(dirpath, f), name) for f in sorted(filenames)
                        if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not samples:
        raise FileNotFoundError(f"no images found in {root}; expected {root}/<class name>/<image file> "
                                f"with extensions {', '.join(IMAGE_EXTENSIONS)}")
    if classes is None:  # class folders without images are left out, so labels stay 0..K-1
        classes = sorted({name for _, name in samples})
    index = {name: i for i, name in enumerate(classes)}
    return list(classes), [(p, index[name]) for p, name in samples]


class ImageFolder(ImageDataset):
    """Images in root/<class>/<file>, labelled by folder (classes in sorted order).

    size: (H, W) or N (N x N) every image is scaled and cropped to; default: a
        square with the first image's shorter side.
    mode: "RGB" (default) or "L" for one grayscale channel.
    normalization: (mean, std) for `transforms.Normalize`; default: measured on
        these images.
    classes: the class names, in label order; default: the sorted folder names.
    For a test folder pass the training folder's size, classes and normalization.
    cache: keep the decoded array in the cache folder (see the module docstring).
    skip_bad: leave out (and list) the files that cannot be decoded, instead of
        an error naming them.
    """

    def __init__(self, root, transform=None, target_transform=None, size=None, mode="RGB", normalization=None,
                 classes=None, cache=True, skip_bad=False):
        self.root = Path(root)
        classes, samples = find_images(self.root, classes)
        paths, labels = [p for p, _ in samples], [label for _, label in samples]
        # the labels depend on `classes` too, so they are part of the cache key
        images, targets, meta = cached_decode([_fingerprint(paths), classes], lambda: (paths, labels, classes),
                                              mode, size, cache, skip_bad)
        left_out = set(meta["left_out"])
        self.samples = [s for i, s in enumerate(samples) if i not in left_out]
        if left_out:
            names = [samples[i][0] for i in sorted(left_out)]
            print(f"{root}: left out {len(names)} image file(s) that cannot be decoded (--skip-bad-images): "
                  + ", ".join(names[:SHOWN_BAD]) + (" ..." if len(names) > SHOWN_BAD else ""), flush=True)
        if normalization is None:
            normalization = (tuple(meta["mean"]), tuple(meta["std"]))
        super().__init__(images, targets, classes, normalization, transform, target_transform)
