"""`mytensor.utils.data` and `mytensor.vision` as PyTorch programs use them: map-style datasets of
any kind, collate_fn, samplers, random_split, and torchvision-style per-sample transforms."""
import numpy as np
import pytest
import torch
import torch.utils.data as tud
from PIL import Image

import mytensor as mt
from mytensor.utils.data import (BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler,
                                 SubsetRandomSampler, TensorDataset, WeightedRandomSampler, default_collate,
                                 random_split)
from mytensor.vision import datasets, transforms, utils


def test_tensor_dataset_gives_tensors_and_slices():
    rng = np.random.default_rng()
    x, y = rng.standard_normal((7, 3)).astype(np.float32), rng.integers(0, 5, 7)
    ds, tds = TensorDataset(mt.tensor(x), mt.tensor(y)), tud.TensorDataset(torch.tensor(x), torch.tensor(y))
    assert len(ds) == len(tds) == 7 and isinstance(ds.tensors[0], mt.Tensor)
    for index in (3, -1, slice(1, 5), slice(None, None, 2)):
        got, want = ds[index], tds[index]
        assert all(isinstance(g, mt.Tensor) for g in got)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.numpy(), w.numpy())
            assert g.shape == tuple(w.shape) and g.dtype.name == str(w.dtype).replace("torch.", "")
    batch_x, batch_y = next(iter(DataLoader(ds, batch_size=4)))
    np.testing.assert_array_equal(batch_x.numpy(), x[:4])
    assert batch_y.dtype == mt.int64
    with pytest.raises(ValueError, match="same first dimension"):
        TensorDataset(mt.zeros(3), mt.zeros(4))


class Squares:
    """A map-style dataset as a PyTorch program writes it: no base class, samples of mixed types."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"x": mt.tensor([float(i), float(i) ** 2]), "label": i % 3, "weight": i / 10, "name": f"s{i}"}


def test_default_collate_matches_torchs():
    samples = [Squares()[i] for i in range(4)]
    got = default_collate(samples)
    want = tud.default_collate([{k: torch.tensor(v.numpy()) if isinstance(v, mt.Tensor) else v
                                 for k, v in s.items()} for s in samples])
    assert set(got) == set(want) and got["name"] == want["name"]
    for k in ("x", "label", "weight"):
        assert isinstance(got[k], mt.Tensor) and got[k].dtype.name == str(want[k].dtype).replace("torch.", "")
        np.testing.assert_array_equal(got[k].numpy(), want[k].numpy())


def test_loader_over_any_map_style_dataset_and_collate_fn():
    batches = list(DataLoader(Squares(), batch_size=4, num_workers=2))
    assert len(batches) == 3 and batches[0]["x"].shape == (4, 2) and batches[2]["label"].tolist() == [2, 0]

    def pad_collate(samples):  # a custom collate: variable-length sequences padded to the longest
        n = max(len(s) for s, _ in samples)
        seqs = mt.stack([mt.cat([s, mt.zeros(n - len(s), dtype=s.dtype)]) for s, _ in samples])
        return seqs, mt.tensor([len(s) for s, _ in samples])

    class Ragged(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return mt.arange(i + 1), i + 1

    seqs, lengths = next(iter(DataLoader(Ragged(), batch_size=3, collate_fn=pad_collate)))
    assert seqs.tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 2]] and lengths.tolist() == [1, 2, 3]


def test_random_split_sizes_match_torch_and_cover_the_dataset():
    ds = TensorDataset(mt.arange(23))
    for lengths in ([10, 13], [0.5, 0.3, 0.2], [0.7, 0.3]):
        parts = random_split(ds, lengths, generator=mt.Generator().manual_seed(1))
        want = tud.random_split(range(23), lengths, generator=torch.Generator().manual_seed(1))
        assert [len(p) for p in parts] == [len(w) for w in want]
        seen = np.concatenate([p.indices for p in parts])
        assert sorted(seen.tolist()) == list(range(23))
        assert parts[0][0][0].item() == parts[0].indices[0]
    again = random_split(ds, [10, 13], generator=mt.Generator().manual_seed(1))
    np.testing.assert_array_equal(again[0].indices, random_split(ds, [10, 13], generator=mt.Generator().manual_seed(
        1))[0].indices)
    with pytest.raises(ValueError, match="don't add up"):
        random_split(ds, [10, 10])


def test_samplers():
    data = list(range(10))
    assert list(SequentialSampler(data)) == data
    g = mt.Generator().manual_seed(0)
    perm = list(RandomSampler(data, generator=g))
    assert sorted(perm) == data and perm != data and len(RandomSampler(data, num_samples=25)) == 25
    assert sorted(set(RandomSampler(data, replacement=True, num_samples=50))) <= data
    assert sorted(SubsetRandomSampler([1, 4, 6])) == [1, 4, 6]
    assert set(WeightedRandomSampler([0, 1, 0, 1], 20)) == {1, 3}
    assert list(BatchSampler(SequentialSampler(data), 4, drop_last=False)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    ds = TensorDataset(mt.arange(10))
    (first,) = next(iter(DataLoader(ds, batch_size=3, sampler=SubsetRandomSampler([7, 8, 9]))))
    assert sorted(first.tolist()) == [7, 8, 9]
    loader = DataLoader(ds, batch_sampler=BatchSampler(SequentialSampler(ds), 4, drop_last=True))
    assert len(loader) == 2 and [b[0].tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, batch_size=2, batch_sampler=BatchSampler(data, 2, False))
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, sampler=data, shuffle=True)


def test_manual_seed_repeats_an_unseeded_shuffle():
    ds = TensorDataset(mt.arange(20))

    def epoch():
        return np.concatenate([b[0].numpy() for b in DataLoader(ds, batch_size=6, shuffle=True, pin_memory=True,
                                                                worker_init_fn=lambda i: None)])
    mt.manual_seed(5)
    a = epoch()
    mt.manual_seed(5)
    assert np.array_equal(a, epoch()) and sorted(a.tolist()) == list(range(20))


def image(rng, mode, h=6, w=5):
    shape = (h, w) if mode == "L" else (h, w, 3)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def test_to_tensor_and_normalize():
    rng = np.random.default_rng()
    for mode in ("L", "RGB"):
        img = image(rng, mode)
        arr = np.asarray(img)
        t = transforms.ToTensor()(img)
        want = (arr[None] if mode == "L" else arr.transpose(2, 0, 1)) / 255
        assert t.dtype == mt.float32 and t.shape == want.shape
        np.testing.assert_allclose(t.numpy(), want, rtol=1e-6)
        mean, std = rng.random(t.shape[0]).tolist(), (rng.random(t.shape[0]) + 0.5).tolist()
        n = transforms.Normalize(mean, std)(t)
        tn = (torch.tensor(t.numpy()) - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
        np.testing.assert_allclose(n.numpy(), tn.numpy(), rtol=1e-6, atol=1e-6)
    assert transforms.PILToTensor()(image(rng, "RGB")).dtype == mt.uint8
    with pytest.raises(TypeError, match="ToTensor"):
        transforms.Normalize((0.5,), (0.5,))(image(rng, "L"))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_random_crop_flip_and_center_crop(as_tensor):
    rng = np.random.default_rng()
    img = image(rng, "RGB", 6, 7)
    arr = np.asarray(img).transpose(2, 0, 1) / 255
    src = transforms.ToTensor()(img) if as_tensor else img
    to_arr = (lambda t: t.numpy()) if as_tensor else (lambda p: transforms.ToTensor()(p).numpy())
    padded = np.pad(arr, ((0, 0), (2, 2), (2, 2)))
    corners = set()
    for _ in range(30):
        out = to_arr(transforms.RandomCrop((6, 7), padding=2)(src))
        hits = [(t, l) for t in range(5) for l in range(5) if np.allclose(out, padded[:, t:t + 6, l:l + 7])]
        assert hits
        corners.add(hits[0])
    assert len(corners) > 3
    np.testing.assert_allclose(to_arr(transforms.RandomHorizontalFlip(p=1.0)(src)), arr[..., ::-1], rtol=1e-6)
    np.testing.assert_allclose(to_arr(transforms.RandomHorizontalFlip(p=0.0)(src)), arr, rtol=1e-6)
    np.testing.assert_allclose(to_arr(transforms.CenterCrop(4)(src)), arr[:, 1:5, 2:6], rtol=1e-6)


def test_datasets_take_transform_and_target_transform():
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = datasets.MNIST(train=False, transform=tf, target_transform=lambda y: y + 100)
    x, y = train[3]
    raw = mt.data.MNIST(train=False)
    assert isinstance(x, mt.Tensor) and x.shape == (1, 28, 28) and y == int(raw.targets[3]) + 100
    np.testing.assert_allclose(x.numpy(), (raw.images[3] / 255 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-6)
    xs, ys = next(iter(DataLoader(train, batch_size=5)))
    assert xs.shape == (5, 1, 28, 28) and xs.dtype == mt.float32 and ys.tolist() == (raw.targets[:5] + 100).tolist()
    np.testing.assert_allclose(xs[3].numpy(), x.numpy())


def test_make_grid_and_save_image(tmp_path):
    rng = np.random.default_rng()
    batch = mt.tensor(rng.random((5, 1, 4, 3)), dtype=mt.float32)
    grid = utils.make_grid(batch, nrow=2, padding=1)
    assert grid.shape == (3, 3 * 5 + 1, 2 * 4 + 1)  # torchvision's layout: 3 rows of 2, one-pixel borders
    np.testing.assert_allclose(grid.numpy()[:, 1:5, 5:8], np.repeat(batch.numpy()[1], 3, axis=0))
    utils.save_image(batch, tmp_path / "samples.png", nrow=5)
    assert Image.open(tmp_path / "samples.png").size == (5 * (3 + 2) + 2, 4 + 4)
