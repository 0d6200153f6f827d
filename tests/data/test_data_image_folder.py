import os

import numpy as np
import pytest
from data_helpers import write_image
from PIL import Image

from mytensor.data import ImageFolder, load_dataset, read_image
from mytensor.data import image_folder as image_folder_module


def rgb(rng, h=8, w=8):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def chw(a):
    return a.transpose(2, 0, 1) if a.ndim == 3 else np.repeat(a[None], 3, axis=0)


@pytest.fixture
def tree(tmp_path):
    """root/{cat,dog}/ with an RGB, a grayscale and an RGBA image (all 8x8, lossless)."""
    rng = np.random.default_rng(0)
    images = {
        "cat/a.png": rgb(rng),
        "cat/b_gray.png": rng.integers(0, 256, (8, 8), dtype=np.uint8),
        "dog/sub/c.png": rgb(rng),
        "dog/d.bmp": rgb(rng),
    }
    for name, a in images.items():
        write_image(tmp_path / "root" / name, a)
    rgba = np.concatenate([rgb(rng), np.full((8, 8, 1), 128, np.uint8)], axis=2)
    write_image(tmp_path / "root" / "dog" / "e_rgba.png", rgba)
    images["dog/e_rgba.png"] = rgba[..., :3]
    (tmp_path / "root" / "dog" / "notes.txt").write_text("not an image")
    return tmp_path / "root", images


def test_image_folder_contents(tree):
    root, images = tree
    ds = ImageFolder(root)
    assert ds.classes == ["cat", "dog"]
    order = ["cat/a.png", "cat/b_gray.png", "dog/d.bmp", "dog/e_rgba.png", "dog/sub/c.png"]
    assert [os.path.relpath(p, root) for p, _ in ds.samples] == order
    assert ds.targets.tolist() == [0, 0, 1, 1, 1]
    np.testing.assert_array_equal(ds.images, np.stack([chw(images[k]) for k in order]))  # gray -> 3 equal channels
    mean, std = ds.normalization
    np.testing.assert_allclose(mean, (ds.images / 255).mean(axis=(0, 2, 3)), atol=1e-4)
    np.testing.assert_allclose(std, (ds.images / 255).std(axis=(0, 2, 3)), atol=1e-4)
    gray = ImageFolder(root, mode="L")
    assert gray.image_shape == (1, 8, 8)
    np.testing.assert_array_equal(gray.images[1, 0], images["cat/b_gray.png"])


def test_other_shapes_are_scaled_to_cover_then_cropped(tree):
    root, _ = tree
    big = np.random.default_rng(1).integers(0, 256, (20, 12, 3), dtype=np.uint8)
    write_image(root / "dog" / "z_big.png", big)
    ds = ImageFolder(root)
    assert ds.images.shape == (6, 3, 8, 8)
    # 12 wide -> 8 wide scales 20 high to 13, whose middle 8 rows are kept: nothing is stretched
    want = np.asarray(Image.fromarray(big).resize((8, 13), Image.BILINEAR))[2:10].transpose(2, 0, 1)
    i = [os.path.basename(p) for p, _ in ds.samples].index("z_big.png")
    np.testing.assert_array_equal(ds.images[i], want)
    assert ImageFolder(root, size=(4, 6)).image_shape == (3, 4, 6)
    assert ImageFolder(root, size=5).image_shape == (3, 5, 5)


def test_non_square_images_become_square(tmp_path):
    rng = np.random.default_rng(7)
    for cls in ("a", "b"):
        for i in range(3):
            write_image(tmp_path / "wide" / cls / f"{i}.png", rgb(rng, 24, 48))
    assert ImageFolder(tmp_path / "wide").image_shape == (3, 24, 24)  # the shorter side
    assert load_dataset(f"folder:{tmp_path / 'wide'}", image_size=16).image_shape == (3, 16, 16)


def test_decoded_once_then_cached(tree, monkeypatch):
    root, _ = tree
    first = ImageFolder(root)
    assert isinstance(first.images, np.memmap)  # loaded back from the cache file

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_folder_module, "decode_all", fail)
    np.testing.assert_array_equal(ImageFolder(root).images, first.images)
    # a changed file changes the key: decoded afresh
    path = root / "cat" / "a.png"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        ImageFolder(root)


def test_unreadable_cache_folder_falls_back(tree, monkeypatch, tmp_path):
    root, _ = tree
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("MYTENSOR_CACHE", str(tmp_path / "file"))  # a file, so no folder can be made in it
    with pytest.warns(UserWarning, match="cannot write the decoded-image cache"):
        ds = ImageFolder(root)
    assert len(ds) == 5 and not isinstance(ds.images, np.memmap)


def test_every_bad_image_is_named_at_once(tree, tmp_path, capsys):
    root, _ = tree
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "dog" / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"2 image file\(s\) cannot be decoded.*--skip-bad-images") as e:
        ImageFolder(root)
    assert "broken.jpg: cannot decode image" in str(e.value) and "empty.png: cannot decode image" in str(e.value)
    decoded = tmp_path / "cache" / "decoded"
    assert not [p for p in decoded.iterdir() if ".tmp-" in p.name]  # the aborted cache entry is removed

    for _ in range(2):  # decoded, then from the cache: the log names the files left out both times
        ds = ImageFolder(root, skip_bad=True)
        assert len(ds) == len(ds.samples) == 5
        assert not {"broken.jpg", "empty.png"} & {os.path.basename(p) for p, _ in ds.samples}
        printed = capsys.readouterr().out
        assert "left out 2 image file(s)" in printed and "broken.jpg" in printed and "empty.png" in printed


def test_oversized_image_is_a_clear_error(tmp_path, monkeypatch):
    from PIL import Image as PILImage
    path = write_image(tmp_path / "huge.png", rgb(np.random.default_rng(8), 40, 40))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 500)  # 1600 pixels: over twice the limit, PIL's error
    with pytest.raises(ValueError, match=r"huge\.png: cannot decode image \(Image size \(1600 pixels\) exceeds"):
        read_image(path, (3, 8, 8))


def test_folder_without_a_path_or_data_dir_that_does_not_exist(tmp_path):
    with pytest.raises(ValueError, match="folder: needs the path of an image folder"):
        load_dataset("folder:")
    with pytest.raises(FileNotFoundError, match=r"data folder .*nowhere \(--data-dir\) does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "nowhere")


def test_empty_or_missing_folder(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images found in"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nope")


def test_folder_dataset_with_split_folders(tmp_path):
    rng = np.random.default_rng(2)
    for cls in ("a", "b", "c"):
        for i in range(2):
            write_image(tmp_path / "train" / cls / f"{i}.png", rgb(rng, 6, 6))
    write_image(tmp_path / "test" / "c" / "0.png", rgb(rng, 9, 9))  # class 'c' only, other size
    train = load_dataset(f"folder:{tmp_path}", train=True)
    test = load_dataset(f"folder:{tmp_path}", train=False)
    assert train.classes == test.classes == ["a", "b", "c"]
    assert test.targets.tolist() == [2] and test.image_shape == (3, 6, 6)
    assert test.normalization == train.normalization


def test_folder_dataset_without_splits_holds_out_every_tenth(tmp_path):
    rng = np.random.default_rng(3)
    for cls, n in (("x", 12), ("y", 20)):
        for i in range(n):
            write_image(tmp_path / cls / f"{i:02d}.png", rgb(rng, 4, 4))
    train = load_dataset(f"folder:{tmp_path}", train=True)
    test = load_dataset(f"folder:{tmp_path}", train=False)
    assert (len(train), len(test)) == (29, 3)
    assert test.targets.tolist() == [0, 1, 1] and test.classes == ["x", "y"]
    assert test.image_shape == (3, 4, 4) and len(test.normalization[0]) == 3
    images, labels = test.get_batch(np.array([2, 0]))
    assert labels.tolist() == [1, 0] and images.dtype == np.float32


def test_read_image_for_predict(tmp_path):
    a = np.random.default_rng(4).integers(0, 256, (10, 10), dtype=np.uint8)
    path = write_image(tmp_path / "digit.png", a)
    x = read_image(path, (3, 5, 5))
    assert x.shape == (3, 5, 5) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    x = read_image(path, (1, 10, 10))
    np.testing.assert_allclose(x[0], a / 255, atol=1e-6)
