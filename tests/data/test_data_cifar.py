import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from data_helpers import png_bytes, write_image

from mytensor.data import CIFAR10, DatasetNotFoundError, load_dataset

N = 3  # images per batch file


def make_cifar(seed=0):
    """{batch name: (data uint8 (N, 3072), labels)} for the five training batches and the test batch."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {n: (rng.integers(0, 256, (N, 3072), dtype=np.uint8), rng.integers(0, 10, N).tolist()) for n in names}


def pickle_bytes(data, labels, bytes_keys=True):
    """As the original files: Python 2 pickles whose keys come back as bytes."""
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    return pickle.dumps({key("batch_label"): key("x"), key("labels"): labels, key("data"): data}, protocol=2)


def write_py(folder, batches, bytes_keys=True):
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        (folder / name).write_bytes(pickle_bytes(data, labels, bytes_keys))


def write_bin(folder, batches):
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())


def expected(batches, train):
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    images = np.concatenate([batches[n][0] for n in names]).reshape(-1, 3, 32, 32)
    return images, np.concatenate([batches[n][1] for n in names])


@pytest.mark.parametrize("bytes_keys", [True, False])
def test_python_pickle_batches(tmp_path, bytes_keys):
    batches = make_cifar()
    write_py(tmp_path / "cifar-10-batches-py", batches, bytes_keys)
    for train in (True, False):
        ds = CIFAR10(tmp_path, train=train)
        images, labels = expected(batches, train)
        np.testing.assert_array_equal(ds.images, images)
        np.testing.assert_array_equal(ds.targets, labels)
    assert len(CIFAR10(tmp_path)) == 5 * N and ds.classes[0] == "airplane" and ds.image_shape == (3, 32, 32)
    # the batches folder itself works as root too
    assert len(CIFAR10(tmp_path / "cifar-10-batches-py", train=False)) == N


def test_binary_batches(tmp_path):
    batches = make_cifar(1)
    write_bin(tmp_path / "cifar-10-batches-bin", batches)
    for train in (True, False):
        ds = load_dataset("cifar10", data_dir=tmp_path, train=train)
        images, labels = expected(batches, train)
        np.testing.assert_array_equal(ds.images, images)
        np.testing.assert_array_equal(ds.targets, labels)
    # the first record's label byte, then red, green, blue planes: pixel (0, 0) of image 0
    data, labels = batches["data_batch_1"]
    assert ds.normalization[0] == (0.4914, 0.4822, 0.4465)
    first = CIFAR10(tmp_path)
    assert first.targets[0] == labels[0] and tuple(first.images[0, :, 0, 0]) == (data[0, 0], data[0, 1024],
                                                                                  data[0, 2048])


def test_python_tarball_read_without_unpacking(tmp_path):
    batches = make_cifar(2)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, (data, labels) in batches.items():
            raw = pickle_bytes(data, labels)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    ds = CIFAR10(tmp_path, train=False)
    np.testing.assert_array_equal(ds.images, expected(batches, False)[0])
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_jpeg_folder_and_tarball(tmp_path):
    rng = np.random.default_rng(3)
    pictures = {}
    for split in ("train", "test"):
        for cls in ("cat", "airplane"):
            for i in range(2):
                a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                pictures[f"cifar10-jpeg/{split}/{cls}/{i:04d}.png"] = a
    for name, a in pictures.items():
        write_image(tmp_path / "tree" / name, a)
    (tmp_path / "tar").mkdir()
    with tarfile.open(tmp_path / "tar" / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        for name, a in reversed(list(pictures.items())):  # archive order must not matter
            raw = png_bytes(a)
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    order = ["airplane/0000", "airplane/0001", "cat/0000", "cat/0001"]
    for base in ("tree", "tar"):
        ds = CIFAR10(tmp_path / base, train=False)
        assert ds.classes == ["airplane", "cat"]
        assert ds.targets.tolist() == [0, 0, 1, 1]
        want = np.stack([pictures[f"cifar10-jpeg/test/{k}.png"].transpose(2, 0, 1) for k in order])
        np.testing.assert_array_equal(ds.images, want)
        assert ds.normalization == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def test_truncated_tarball(tmp_path):
    (tmp_path / "cifar10-jpeg.tar.gz").write_bytes(b"\x1f\x8b\x08\x00 not really")
    with pytest.raises(ValueError, match=r"(?s)cifar10-jpeg\.tar\.gz: cannot read the archive.*corrupt or truncated"):
        CIFAR10(tmp_path)


def test_truncated_pickle(tmp_path):
    write_py(tmp_path / "cifar-10-batches-py", make_cifar())
    path = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"data_batch_4: not a readable CIFAR-10 pickle batch.*corrupt or truncated"):
        CIFAR10(tmp_path)


class Malicious:
    def __reduce__(self):
        return os.remove, ("/nonexistent/file",)


def test_pickle_with_code_is_refused(tmp_path):
    write_py(tmp_path / "cifar-10-batches-py", make_cifar())
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Malicious()))
    with pytest.raises(ValueError, match=r"test_batch: not a readable .*unexpected object (posix|os)\.remove"):
        CIFAR10(tmp_path, train=False)


def test_wrong_shape_in_pickle(tmp_path):
    batches = make_cifar()
    batches["test_batch"] = (np.zeros((N, 100), np.uint8), [0] * N)
    write_py(tmp_path / "cifar-10-batches-py", batches)
    with pytest.raises(ValueError, match=r"test_batch: 'data' should be uint8 \(N, 3072\)"):
        CIFAR10(tmp_path, train=False)


def test_truncated_binary(tmp_path):
    write_bin(tmp_path / "cifar-10-batches-bin", make_cifar())
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"test_batch\.bin: 9214 bytes is not a whole number of 3073-byte records"):
        CIFAR10(tmp_path, train=False)


def test_bad_label_in_binary(tmp_path):
    batches = make_cifar()
    batches["test_batch"][1][0] = 12
    write_bin(tmp_path / "cifar-10-batches-bin", batches)
    with pytest.raises(ValueError, match=r"test_batch\.bin: labels must be 0\.\.9"):
        CIFAR10(tmp_path, train=False)


def test_missing_batch_file(tmp_path):
    write_py(tmp_path / "cifar-10-batches-py", make_cifar())
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3 is missing"):
        CIFAR10(tmp_path)


def test_missing_offline(tmp_path, no_data_env):
    with pytest.raises(DatasetNotFoundError) as e:
        CIFAR10(tmp_path / "empty")
    assert "cifar-10-python.tar.gz" in str(e.value) and str(tmp_path / "empty") in str(e.value)


SHARED = os.environ.get("MYTENSOR_DATA")


@pytest.mark.skipif(not SHARED or not (Path(SHARED) / "cifar10-jpeg.tar.gz").is_file(),
                    reason="MYTENSOR_DATA with cifar10-jpeg.tar.gz not set")
def test_real_cifar_jpeg_tarball_test_split():
    ds = load_dataset("cifar10", train=False)
    assert ds.images.shape == (10000, 3, 32, 32)
    assert np.bincount(ds.targets).tolist() == [1000] * 10
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    again = load_dataset("cifar10", train=False)  # from the cache
    np.testing.assert_array_equal(again.images[::997], ds.images[::997])
