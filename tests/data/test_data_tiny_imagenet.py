"""Tiny ImageNet from its unpacked folder, its zip and a tar.gz, on small copies
the tests write (grayscale JPEGs included), and an error naming the file for
each missing or damaged one."""
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_image, write_tiny_imagenet
from PIL import Image

from mytensor.data import TinyImageNet, load_dataset
from mytensor.data import image_folder as image_folder_module

def files_of(root):
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def write_zip(src, path):
    """The official zip's layout: every path starts with tiny-imagenet-200/ (no folder entries)."""
    with zipfile.ZipFile(path, "w") as z:
        for f in files_of(src):
            z.write(f, f"tiny-imagenet-200/{f.relative_to(src)}")
    return path


def write_tar(src, path):
    with tarfile.open(path, "w:gz") as t:
        t.add(src, "tiny-imagenet-200")
    return path


def pil_decode(path):
    return np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)


@pytest.fixture
def copies(tmp_path):
    """The same random data set as a folder, a zip and a tar.gz, each in a data folder of its own."""
    src = write_tiny_imagenet(tmp_path / "folder" / "tiny-imagenet-200", np.random.default_rng())
    (tmp_path / "zip").mkdir()
    (tmp_path / "tar").mkdir()
    write_zip(src, tmp_path / "zip" / "tiny-imagenet-200.zip")
    write_tar(src, tmp_path / "tar" / "tiny-imagenet-200.tar.gz")
    return src, {kind: tmp_path / kind for kind in ("folder", "zip", "tar")}


@pytest.mark.parametrize("kind", ["folder", "zip", "tar"])
def test_every_copy_gives_the_same_images(copies, kind):
    src, data = copies
    train = TinyImageNet(data[kind])
    assert train.wnids == ["n01", "n02"] and train.classes == ["goldfish", "tabby"]
    assert train.targets.tolist() == [0, 0, 1, 1] and train.image_shape == (3, 64, 64)
    files = [src / "train" / w / "images" / f"{w}_{i}.JPEG" for w in ("n01", "n02") for i in range(2)]
    np.testing.assert_array_equal(train.images, np.stack([pil_decode(f) for f in files]))
    gray = train.images[1]  # the grayscale JPEG, made RGB
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all() and gray.std() > 0
    val = load_dataset("tiny-imagenet", data_dir=data[kind], train=False)
    assert val.targets.tolist() == [1, 0, 1]
    np.testing.assert_array_equal(val.images, np.stack([pil_decode(src / "val" / "images" / f"val_{i}.JPEG")
                                                         for i in range(3)]))
    assert not (data[kind] / "tiny-imagenet-200").exists() or kind == "folder"  # nothing unpacked


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_an_archive_is_decoded_once_then_read_from_the_cache(copies, kind, monkeypatch):
    _, data = copies
    first = TinyImageNet(data[kind]).images.copy()
    monkeypatch.setattr(image_folder_module, "decode_all", lambda *a, **k: pytest.fail("decoded again"))
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: pytest.fail("archive opened again"))
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: pytest.fail("archive opened again"))
    again = TinyImageNet(data[kind])
    np.testing.assert_array_equal(again.images, first)
    assert again.classes == ["goldfish", "tabby"]


def test_a_changed_archive_is_decoded_afresh(copies):
    src, data = copies
    archive = data["zip"] / "tiny-imagenet-200.zip"
    TinyImageNet(data["zip"], train=False)
    write_image(src / "val" / "images" / "val_0.JPEG", np.zeros((64, 64, 3), np.uint8), "JPEG")
    write_zip(src, archive)
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
    assert TinyImageNet(data["zip"], train=False).images[0].max() == 0


@pytest.mark.parametrize("kind,name", [("zip", "tiny-imagenet-200.zip"), ("tar", "tiny-imagenet-200.tar.gz")])
def test_a_truncated_archive_is_named(copies, kind, name):
    _, data = copies
    archive = data[kind] / name
    archive.write_bytes(archive.read_bytes()[:archive.stat().st_size * 2 // 3])
    with pytest.raises(ValueError, match=rf"{name}: cannot read the archive .*corrupt or truncated"):
        TinyImageNet(data[kind])


@pytest.mark.parametrize("kind", ["folder", "zip", "tar"])
def test_a_jpeg_that_does_not_decode_is_named(copies, kind):
    src, data = copies
    bad = src / "train" / "n02" / "images" / "n02_1.JPEG"
    bad.write_bytes(bad.read_bytes()[:200])  # a truncated JPEG
    write_zip(src, data["zip"] / "tiny-imagenet-200.zip")
    write_tar(src, data["tar"] / "tiny-imagenet-200.tar.gz")
    with pytest.raises(ValueError, match=r"1 image file\(s\) cannot be decoded.*\n.*"
                                         r"tiny-imagenet-200/train/n02/images/n02_1\.JPEG: cannot decode"):
        TinyImageNet(data[kind])


@pytest.mark.parametrize("kind", ["folder", "zip", "tar"])
@pytest.mark.parametrize("missing,train,message", [
    ("wnids.txt", True, r"tiny-imagenet-200/wnids\.txt is missing"),
    ("val/val_annotations.txt", False, r"tiny-imagenet-200/val/val_annotations\.txt is missing"),
    ("train/n01", True, r"tiny-imagenet-200/train/n01/images is missing \(one folder per line of wnids\.txt\)"),
    ("val/images/val_2.JPEG", False, r"tiny-imagenet-200/val/images/val_2\.JPEG is missing \(line 3 of "),
])
def test_a_missing_file_is_named(tmp_path, kind, missing, train, message):
    src = write_tiny_imagenet(tmp_path / "src" / "tiny-imagenet-200", np.random.default_rng())
    for f in files_of(src / missing) if (src / missing).is_dir() else [src / missing]:
        f.unlink()
    if (src / missing).is_dir():
        for d in sorted((src / missing).rglob("*"), reverse=True) + [src / missing]:
            d.rmdir()
    data = tmp_path / kind
    data.mkdir()
    {"folder": lambda: os.replace(src, data / "tiny-imagenet-200"),
     "zip": lambda: write_zip(src, data / "tiny-imagenet-200.zip"),
     "tar": lambda: write_tar(src, data / "tiny-imagenet-200.tar.gz")}[kind]()
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        TinyImageNet(data, train=train)


def test_an_annotation_with_an_unknown_wnid_is_named(tmp_path):
    root = write_tiny_imagenet(tmp_path / "tiny-imagenet-200", np.random.default_rng())
    with open(root / "val" / "val_annotations.txt", "a") as f:
        f.write("val_9.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match=r"val_annotations\.txt, line 4: .*wnid from wnids\.txt"):
        TinyImageNet(root, train=False)


def test_no_copy_offline_says_what_to_put_where(tmp_path, no_data_env):
    with pytest.raises(FileNotFoundError, match=r"(?s)Tiny ImageNet was not found.*tiny-imagenet-200\.zip.*"
                                                r"tiny-imagenet-200\.tar\.gz"):
        TinyImageNet(tmp_path)
