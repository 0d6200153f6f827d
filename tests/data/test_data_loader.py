import threading
import time

import numpy as np
import pytest

import mytensor as mt
from mytensor.data import DataLoader, Dataset, ImageDataset, TensorDataset, load_dataset, transforms


def numbers(n=10):
    return TensorDataset(np.arange(n) * 10, np.arange(n))


def collect(loader):
    return [tuple(t.numpy() for t in b) for b in loader]


def test_batches_and_drop_last():
    loader = DataLoader(numbers(), batch_size=3)
    batches = collect(loader)
    assert len(loader) == 4 and [len(b[1]) for b in batches] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), np.arange(10) * 10)
    loader = DataLoader(numbers(), batch_size=3, drop_last=True)
    assert len(loader) == 3 and [b[1].tolist() for b in collect(loader)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert len(DataLoader(numbers(9), batch_size=3, drop_last=False)) == 3


def test_yields_tensors():
    ds = ImageDataset(np.full((5, 1, 2, 2), 255, np.uint8), np.arange(5) % 2, ["a", "b"])
    images, labels = next(iter(DataLoader(ds, batch_size=4, device="cpu")))
    assert isinstance(images, mt.Tensor) and images.dtype == mt.float32 and images.shape == (4, 1, 2, 2)
    assert labels.dtype == mt.int64 and labels.numpy().tolist() == [0, 1, 0, 1]
    np.testing.assert_array_equal(images.numpy(), 1.0)


def test_seeded_shuffle_is_reproducible_per_epoch():
    a = DataLoader(numbers(50), batch_size=8, shuffle=True, seed=7)
    b = DataLoader(numbers(50), batch_size=8, shuffle=True, seed=7)
    epochs_a = [np.concatenate([y for _, y in collect(a)]) for _ in range(3)]
    epochs_b = [np.concatenate([y for _, y in collect(b)]) for _ in range(3)]
    for ea, eb in zip(epochs_a, epochs_b):
        np.testing.assert_array_equal(ea, eb)
        assert sorted(ea.tolist()) == list(range(50))
    assert not np.array_equal(epochs_a[0], epochs_a[1])  # a new order every epoch
    other = DataLoader(numbers(50), batch_size=8, shuffle=True, seed=8)
    assert not np.array_equal(np.concatenate([y for _, y in collect(other)]), epochs_a[0])


def test_resume_repeats_the_order():
    a = DataLoader(numbers(30), batch_size=4, shuffle=True, seed=1, transform=transforms.Lambda(lambda x: x))
    for _ in range(2):
        collect(a)
    state = a.state_dict()
    assert state == {"seed": 1, "epoch": 2}
    third = collect(a)
    # a fresh loader (a resumed run) picks up at epoch 2: via load_state_dict ...
    b = DataLoader(numbers(30), batch_size=4, shuffle=True, seed=123)
    b.load_state_dict(state)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(third, collect(b)))
    # ... or via set_epoch, as the training loop does
    c = DataLoader(numbers(30), batch_size=4, shuffle=True, seed=1)
    c.set_epoch(2)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(third, collect(c)))


def test_unseeded_loader_records_its_seed():
    a = DataLoader(numbers(30), batch_size=4, shuffle=True)
    b = DataLoader(numbers(30), batch_size=4, shuffle=True)
    b.load_state_dict(a.state_dict())
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(collect(a), collect(b)))


def augmenting_loader(num_workers):
    images = np.random.default_rng(0).integers(0, 256, (37, 3, 8, 8), dtype=np.uint8)
    ds = ImageDataset(images, np.arange(37) % 3, ["a", "b", "c"])
    tf = transforms.Compose([transforms.RandomCrop(8, padding=2), transforms.RandomHorizontalFlip(),
                             transforms.Normalize((0.5,) * 3, (0.25,) * 3)])
    return DataLoader(ds, batch_size=5, shuffle=True, seed=3, transform=tf, num_workers=num_workers)


@pytest.mark.parametrize("num_workers", [1, 3])
def test_worker_threads_give_the_same_batches_in_order(num_workers):
    threaded, inline = augmenting_loader(num_workers), augmenting_loader(0)
    for _ in range(2):
        a, b = collect(threaded), collect(inline)
        assert len(a) == len(b) == 8
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


def test_workers_overlap_and_stop_on_break():
    class Slow(Dataset):
        def __len__(self):
            return 100

        def get_batch(self, idx):
            time.sleep(0.05)
            return np.asarray(idx, dtype=np.float32), np.asarray(idx)

    loader = DataLoader(Slow(), batch_size=10, num_workers=1)
    before = threading.active_count()
    start = time.perf_counter()
    for i, _ in enumerate(loader):
        time.sleep(0.05)  # the "training step": the next batch is made meanwhile
        if i == 4:
            break
    assert time.perf_counter() - start < 0.45  # about 0.3 s; 5 steps + 5 loads in turn would take 0.5 s
    time.sleep(0.05)
    assert threading.active_count() == before  # the thread ended after the break


def test_errors_in_the_background_reach_the_caller():
    class Broken(Dataset):
        def __len__(self):
            return 10

        def get_batch(self, idx):
            if idx[0] >= 4:
                raise RuntimeError("bad sample 4")
            return np.zeros((len(idx), 1), np.float32), np.zeros(len(idx), np.int64)

    with pytest.raises(RuntimeError, match="bad sample 4"):
        collect(DataLoader(Broken(), batch_size=2, num_workers=2))


def test_getitem_only_dataset_works():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full((1, 2, 2), i, np.float32), i * i

    (x, y), (x2, y2) = collect(DataLoader(Squares(), batch_size=3))
    assert x.shape == (3, 1, 2, 2) and y.tolist() == [0, 1, 4] and y2.tolist() == [9, 16]


def test_fast_path_is_used():
    class NoGetItem(ImageDataset):
        def __getitem__(self, i):
            raise AssertionError("per-sample path used")

    ds = NoGetItem(np.zeros((8, 1, 2, 2), np.uint8), np.zeros(8), ["a"])
    assert len(collect(DataLoader(ds, batch_size=4, shuffle=True, seed=0))) == 2


def test_prepare_applies_the_transform():
    loader = DataLoader(numbers(), transform=transforms.Normalize((0.5,), (0.5,)))
    x = loader.prepare(np.ones((1, 1, 2, 2), np.float32))
    assert isinstance(x, mt.Tensor)
    np.testing.assert_array_equal(x.numpy(), 1.0)


def test_real_mnist_pipeline(no_data_env):
    ds = load_dataset("mnist", train=False)
    loader = DataLoader(ds, batch_size=1000, transform=transforms.Normalize(*ds.normalization))
    xs = np.concatenate([x.numpy() for x, _ in loader])
    assert xs.shape == (10000, 1, 28, 28)
    assert abs(xs.mean()) < 0.05 and abs(xs.std() - 1) < 0.05


def test_bad_loader_settings_are_named():
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        DataLoader(numbers(5), batch_size=0)
    with pytest.raises(ValueError, match="num_workers must be 0 or more, got -1"):
        DataLoader(numbers(5), num_workers=-1)
