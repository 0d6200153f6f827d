"""Tiny ImageNet: 200 classes of 64x64 colour images, 500 per class for training
and 50 per class for validation (used as our test set: the real test set has no labels).

Layout of `tiny-imagenet-200/` (as unzipped from tiny-imagenet-200.zip):

    wnids.txt                          the 200 WordNet ids, one a line
    words.txt                          wnid <tab> readable names (optional here)
    train/<wnid>/images/<wnid>_N.JPEG
    val/images/val_N.JPEG
    val/val_annotations.txt            val_N.JPEG <tab> wnid <tab> box...

The 110,000 JPEGs are decoded once and cached (see `image_folder`).
"""
import os
from pathlib import Path

from . import sources
from .dataset import ImageDataset
from .image_folder import IMAGE_EXTENSIONS, _fingerprint, cached_decode

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ZIP_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
MEAN, STD = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)


def _read_lines(path):
    if not path.is_file():
        raise FileNotFoundError(f"Tiny ImageNet: {path} is missing")
    return [line.rstrip("\n\r") for line in path.read_text().splitlines() if line.strip()]


def list_split(root, train):
    """(paths, labels, wnids) of a split; wnids in sorted order give the labels."""
    root = Path(root)
    wnids = sorted(_read_lines(root / "wnids.txt"))
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = [], []
    if train:
        for w in wnids:
            folder = root / "train" / w / "images"
            if not folder.is_dir():
                raise FileNotFoundError(f"Tiny ImageNet: {folder} is missing (one folder per line of wnids.txt)")
            files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
            paths += [str(folder / f) for f in files]
            labels += [index[w]] * len(files)
    else:
        annotations = root / "val" / "val_annotations.txt"
        for n, line in enumerate(_read_lines(annotations), 1):
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in index:
                raise ValueError(f"{annotations}, line {n}: expected 'file<TAB>wnid...' with a wnid "
                                 f"from wnids.txt, got {line!r}")
            paths.append(str(root / "val" / "images" / fields[0]))
            labels.append(index[fields[1]])
        paths, labels = map(list, zip(*sorted(zip(paths, labels)))) if paths else ([], [])
    if not paths:
        raise FileNotFoundError(f"Tiny ImageNet: no {'train' if train else 'val'} images under {root}")
    return paths, labels, wnids


def readable_names(root, wnids):
    """The first name of each wnid from words.txt ('n01443537' -> 'goldfish'), else the wnid."""
    words = Path(root) / "words.txt"
    names = {}
    if words.is_file():
        for line in words.read_text().splitlines():
            wnid, _, text = line.partition("\t")
            names[wnid] = text.split(",")[0].strip()
    return [names.get(w) or w for w in wnids]


class TinyImageNet(ImageDataset):
    """Tiny ImageNet from `root` (the `tiny-imagenet-200` folder, or a data folder
    holding it or its zip); None searches the usual places, then downloads.
    `classes` are readable names from words.txt; `wnids` the WordNet ids."""

    MEAN, STD = MEAN, STD

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=True):
        self.root = root = self.locate(root, download)
        paths, labels, wnids = list_split(root, train)
        self.wnids = wnids
        images, targets, _ = cached_decode(_fingerprint(paths), lambda: (paths, labels, wnids), "RGB", (64, 64))
        super().__init__(images, targets, readable_names(root, wnids), (MEAN, STD), transform, target_transform)

    @classmethod
    def locate(cls, root=None, download=True):
        if root is not None and (Path(root) / "wnids.txt").is_file():
            return Path(root)
        found = sources.find(["tiny-imagenet-200", "tiny-imagenet-200.zip"], root)
        if found is not None and found.is_dir():
            return found
        archive = found
        if archive is None:
            if not download:
                sources.raise_not_found("Tiny ImageNet", ["tiny-imagenet-200.zip (or its unzipped folder)"],
                                        None, root, "downloads are off")
            target = sources.download_dir(root)
            sources.download_all([(URL, "tiny-imagenet-200.zip", ZIP_MD5)], target, "Tiny ImageNet", root,
                                 subfolder=None, hint=" Its unzipped folder tiny-imagenet-200/ works too.")
            archive = target / "tiny-imagenet-200.zip"
        print(f"Unzipping {archive} ...", flush=True)
        try:
            sources.extract(archive, archive.parent)
        except OSError as e:
            raise RuntimeError(f"cannot unzip {archive} next to itself ({e}); unzip it by hand "
                               f"into a writable data folder") from None
        return archive.parent / "tiny-imagenet-200"
