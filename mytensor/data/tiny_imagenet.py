"""Tiny ImageNet: 200 classes of 64x64 colour images, 500 per class for training
and 50 per class for validation (used as our test set: the real test set has no labels).

It is read from whichever of these copies is found first in a data folder:

    tiny-imagenet-200/          the unpacked folder
    tiny-imagenet-200.zip       the official download, read without unpacking
    tiny-imagenet-200.tar.gz    the same files as a tarball, read without unpacking

and otherwise downloaded (the zip, md5-checked). Inside each, as in the zip:

    wnids.txt                          the 200 WordNet ids, one a line
    words.txt                          wnid <tab> readable names (optional here)
    train/<wnid>/images/<wnid>_N.JPEG
    val/images/val_N.JPEG
    val/val_annotations.txt            val_N.JPEG <tab> wnid <tab> box...

The JPEGs (1,989 of them grayscale, given three channels) are decoded once per
split and cached (see `image_folder`). An archive's cache entry is keyed by its
path, size and modification time, so a second start opens neither the archive
nor a JPEG; a folder's by its files', as for any image folder.
"""
import os
import tarfile
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path

from . import sources
from .dataset import ImageDataset
from .image_folder import IMAGE_EXTENSIONS, NamedBytes, _fingerprint, cached_decode

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ZIP_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
MEAN, STD = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)
FOLDER = "tiny-imagenet-200"
COPIES = (FOLDER, f"{FOLDER}.zip", f"{FOLDER}.tar.gz")
SPLIT_IMAGES = {True: "train/", False: "val/images/"}


class _Folder:
    """The unpacked folder: its files by their path inside it."""

    def __init__(self, root):
        self.root = Path(root)

    def name(self, rel):
        return str(self.root / rel)

    def exists(self, rel):
        return (self.root / rel).is_file()

    def text(self, rel):
        return (self.root / rel).read_text()

    def listdir(self, rel):
        """The sorted names in folder `rel`, or None if there is no such folder."""
        folder = self.root / rel
        return sorted(os.listdir(folder)) if folder.is_dir() else None

    def image(self, rel):
        return self.name(rel)  # a path: decoding reads the file


class _Archive:
    """A .zip or .tar.gz holding tiny-imagenet-200/, read in one pass (a tar.gz has
    no index): the text files and one split's images are kept in memory, by their
    path inside the folder."""

    def __init__(self, path, train):
        self.path, self.keep = Path(path), SPLIT_IMAGES[train]
        self.files, self.dirs, self.children = {}, {""}, defaultdict(list)
        try:
            if self.path.name.endswith(".zip"):
                with zipfile.ZipFile(path) as z:
                    for info in z.infolist():
                        self._add(info.filename, info.is_dir(), lambda: z.read(info))
            else:
                with tarfile.open(path) as t:
                    for m in t:
                        if m.isfile() or m.isdir():
                            self._add(m.name, m.isdir(), lambda: t.extractfile(m).read())
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise ValueError(f"{path}: cannot read the archive ({str(e) or type(e).__name__}); it is corrupt or "
                             f"truncated: delete it and download it again") from None

    def _add(self, member, is_dir, read):
        member = member.removeprefix("./")
        if not member.startswith(f"{FOLDER}/"):
            return
        rel = member[len(FOLDER) + 1:].rstrip("/")
        parts = rel.split("/")
        self.dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + (1 if is_dir else 0)))
        if not is_dir and ((rel.endswith(".txt") and not rel.startswith("train/")) or rel.startswith(self.keep)):
            self.files[rel] = read()
            self.children["/".join(parts[:-1])].append(parts[-1])

    def name(self, rel):
        return f"{self.path}:{FOLDER}/{rel}"

    def exists(self, rel):
        return rel in self.files

    def text(self, rel):
        return self.files[rel].decode()

    def listdir(self, rel):
        return sorted(self.children[rel]) if rel in self.dirs else None

    def image(self, rel):
        return NamedBytes(self.files[rel], self.name(rel))


def _lines(files, rel):
    if not files.exists(rel):
        raise FileNotFoundError(f"Tiny ImageNet: {files.name(rel)} is missing")
    return [line.rstrip("\r") for line in files.text(rel).splitlines() if line.strip()]


def list_split(files, train):
    """(images: paths or bytes, labels, wnids) of a split; wnids in sorted order give the labels."""
    wnids = sorted(_lines(files, "wnids.txt"))
    index = {w: i for i, w in enumerate(wnids)}
    items, labels = [], []
    if train:
        for w in wnids:
            folder = f"train/{w}/images"
            names = files.listdir(folder)
            if names is None:
                raise FileNotFoundError(f"Tiny ImageNet: {files.name(folder)} is missing (one folder per line of "
                                        f"wnids.txt)")
            names = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
            items += [files.image(f"{folder}/{n}") for n in names]
            labels += [index[w]] * len(names)
    else:
        annotations = "val/val_annotations.txt"
        rows = []
        for n, line in enumerate(_lines(files, annotations), 1):
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in index:
                raise ValueError(f"{files.name(annotations)}, line {n}: expected 'file<TAB>wnid...' with a wnid "
                                 f"from wnids.txt, got {line!r}")
            if not files.exists(f"val/images/{fields[0]}"):
                raise FileNotFoundError(f"Tiny ImageNet: {files.name('val/images/' + fields[0])} is missing "
                                        f"(line {n} of {annotations})")
            rows.append((fields[0], index[fields[1]]))
        rows.sort()
        items = [files.image(f"val/images/{name}") for name, _ in rows]
        labels = [label for _, label in rows]
    if not items:
        raise FileNotFoundError(f"Tiny ImageNet: no {'train' if train else 'val'} images in {files.name('')}")
    return items, labels, wnids


def readable_names(files, wnids):
    """The first name of each wnid from words.txt ('n01443537' -> 'goldfish'), else the wnid."""
    names = {}
    if files.exists("words.txt"):
        for line in files.text("words.txt").splitlines():
            wnid, _, text = line.partition("\t")
            names[wnid] = text.split(",")[0].strip()
    return [names.get(w) or w for w in wnids]


def _split(copy, train):
    """(fingerprint, list_images) of a split for `cached_decode`; the classes it
    caches are [wnid, readable name] pairs, so a cached archive is never opened."""
    def listing(files):
        items, labels, wnids = list_split(files, train)
        return items, labels, [list(p) for p in zip(wnids, readable_names(files, wnids))]

    if copy.is_dir():
        items, labels, classes = listing(_Folder(copy))
        return [FOLDER, _fingerprint(items)], lambda: (items, labels, classes)
    st = os.stat(copy)
    return ([FOLDER, str(copy.resolve()), st.st_size, st.st_mtime_ns, SPLIT_IMAGES[train]],
            lambda: listing(_Archive(copy, train)))


class TinyImageNet(ImageDataset):
    """Tiny ImageNet from `root` (one of the copies listed in the module docstring,
    or a data folder holding one); None searches the usual places, then downloads.
    `classes` are readable names from words.txt; `wnids` the WordNet ids."""

    MEAN, STD = MEAN, STD
    CROP_PADDING = 4  # shifts of up to 4 of 64 pixels: the recipe the README's results use

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=True):
        self.root = copy = self.locate(root, download)
        images, targets, meta = cached_decode(*_split(copy, train), "RGB", (64, 64))
        self.wnids = [w for w, _ in meta["classes"]]
        super().__init__(images, targets, [name for _, name in meta["classes"]], (MEAN, STD), transform,
                         target_transform)

    @classmethod
    def locate(cls, root=None, download=True):
        """The copy to read: `root` itself if it is one, else the first of COPIES in
        the search folders, else the downloaded zip."""
        if root is not None and ((Path(root) / "wnids.txt").is_file() or Path(root).is_file()):
            return Path(root)
        found = sources.find(COPIES, root)
        if found is not None:
            return found
        hint = f" Its unpacked folder {FOLDER}/ or a {FOLDER}.tar.gz of that folder work too."
        if not download:
            sources.raise_not_found("Tiny ImageNet", [f"{FOLDER}.zip"], None, root, "downloads are off", hint)
        target = sources.download_dir(root)
        sources.download_all([(URL, f"{FOLDER}.zip", ZIP_MD5)], target, "Tiny ImageNet", root, subfolder=None,
                             hint=hint)
        return target / f"{FOLDER}.zip"
