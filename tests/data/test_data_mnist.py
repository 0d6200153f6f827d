import gzip
import hashlib
import io
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from data_helpers import idx_bytes, write_idx_gz, write_mnist

from mytensor.data import MNIST, DatasetNotFoundError, FashionMNIST, load_dataset
from mytensor.data.mnist import read_idx
from mytensor.data.sources import PACKAGE_FILES


def test_reads_idx_files_exactly(tmp_path):
    data = write_mnist(tmp_path / "mnist")
    for train, split in ((True, "train"), (False, "t10k")):
        ds = MNIST(tmp_path / "mnist", train=train)
        images, labels = data[split]
        np.testing.assert_array_equal(ds.images, images[:, None])
        np.testing.assert_array_equal(ds.targets, labels)
        assert ds.targets.dtype == np.int64 and ds.images.dtype == np.uint8
        assert ds.image_shape == (1, 28, 28) and ds.num_classes == 10
        x, y = ds[1]
        assert x.dtype == np.float32 and x.shape == (1, 28, 28) and y == labels[1]
        np.testing.assert_allclose(x, images[1][None] / 255, rtol=1e-6)


def test_found_in_data_dir_env_and_uncompressed(tmp_path, monkeypatch, no_data_env):
    data = write_mnist(tmp_path / "base" / "mnist", seed=1)
    # --data-dir pointing at the folder that holds mnist/
    np.testing.assert_array_equal(load_dataset("mnist", data_dir=tmp_path / "base").targets, data["train"][1])
    # $MYTENSOR_DATA
    monkeypatch.setenv("MYTENSOR_DATA", str(tmp_path / "base"))
    np.testing.assert_array_equal(load_dataset("mnist", train=False).targets, data["t10k"][1])
    # uncompressed files work too
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in (tmp_path / "base" / "mnist").iterdir():
        (plain / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
    np.testing.assert_array_equal(MNIST(plain).images[:, 0], data["train"][0])


def test_bad_magic_number(tmp_path):
    write_mnist(tmp_path)
    labels = np.zeros(6, np.uint8)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))  # a 1-d file
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: bad magic number 0x00000801"):
        MNIST(tmp_path)


def test_truncated_gzip(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: cannot decompress.*corrupt or truncated"):
        MNIST(tmp_path)


def test_truncated_data(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: the header promises 4x28x28 = 3136 "
                                         r"bytes of data but the file holds 3036; it is truncated"):
        MNIST(tmp_path, train=False)


def test_not_gzip_at_all(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: cannot decompress"):
        MNIST(tmp_path)


def test_images_and_labels_disagree(tmp_path):
    write_mnist(tmp_path)
    write_idx_gz(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="holds 6 images but .* holds 5 labels"):
        MNIST(tmp_path)


def test_missing_offline_says_which_files_where(tmp_path, no_data_env):
    with pytest.raises(DatasetNotFoundError) as e:
        FashionMNIST(tmp_path / "nowhere")
    msg = str(e.value)
    assert "network disabled" in msg
    assert "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in msg
    assert "fashion-mnist/" in msg and str(tmp_path / "nowhere") in msg and "MYTENSOR_DATA" in msg
    with pytest.raises(DatasetNotFoundError, match="downloads are off"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "nowhere", download=False)


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_checks_md5_and_writes_atomically(tmp_path, monkeypatch, no_data_env):
    data = write_mnist(tmp_path / "server")
    served = {f.name: f.read_bytes() for f in (tmp_path / "server").iterdir()}
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, timeout=None: FakeResponse(served[url.rsplit("/", 1)[1]]))
    monkeypatch.setattr(FashionMNIST, "MD5", {n: hashlib.md5(b).hexdigest() for n, b in served.items()})
    ds = FashionMNIST(tmp_path / "data")
    np.testing.assert_array_equal(ds.targets, data["train"][1])
    assert sorted(os.listdir(tmp_path / "data" / "fashion-mnist")) == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]

    monkeypatch.setattr(FashionMNIST, "MD5", {n: "0" * 32 for n in served})
    with pytest.raises(DatasetNotFoundError, match="md5"):
        FashionMNIST(tmp_path / "other", train=False)
    assert os.listdir(tmp_path / "other" / "fashion-mnist") == []  # no half-written or bad file left


def test_packaged_mnist_is_the_canonical_copy():
    expected = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
    for name, md5 in expected.items():
        assert hashlib.md5((PACKAGE_FILES / "mnist" / name).read_bytes()).hexdigest() == md5


def test_real_mnist_from_package(no_data_env):
    train, test = MNIST(), MNIST(train=False)
    assert train.root == PACKAGE_FILES / "mnist"
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.targets[:5].tolist() == [5, 0, 4, 1, 9] and test.targets[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(test.targets).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    mean, std = train.normalization
    assert abs(train.images.mean() / 255 - mean[0]) < 1e-3


SHARED = os.environ.get("MYTENSOR_DATA")


@pytest.mark.skipif(not SHARED or not (Path(SHARED) / "fashion-mnist").is_dir(),
                    reason="MYTENSOR_DATA with fashion-mnist/ not set")
def test_real_fashion_mnist_from_env():
    ds = load_dataset("fashion-mnist", train=False)
    assert ds.images.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.targets).tolist() == [1000] * 10
    assert ds.classes[9] == "Ankle boot"


def test_read_idx_reports_short_header(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0]))
    with pytest.raises(ValueError, match="truncated inside the header"):
        read_idx(path, 1)
