"""DeviceLoader: the dataset on the device, each batch one `augment_images` call. On the CPU (NumPy)
here; the same code runs on a GPU, whose kernel tests/test_augment_images.py checks."""
import numpy as np
import pytest

import mytensor as mt
from mytensor.data import DataLoader, DeviceLoader, ImageDataset, declared_augmentation, transforms

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def numbered(n=40, side=6):
    """Image i holds i + 1 (never 0, so nothing reads as padding) above a left-to-right ramp of
    its last row (so a flip shows); label i % 4."""
    images = np.zeros((n, 3, side, side), np.uint8)
    images[:] = (np.arange(n) + 1)[:, None, None, None]
    images[:, :, -1, :] = 200 + np.arange(side)
    return ImageDataset(images, np.arange(n) % 4, ["a", "b", "c", "d"], (MEAN, STD))


def pixels(batch):
    """The uint8 pixels back from a normalised batch."""
    x = batch.numpy().astype(np.float64) * np.array(STD)[:, None, None] + np.array(MEAN)[:, None, None]
    return np.rint(x * 255).astype(int)


def epoch(loader):
    return [(x, y) for x, y in loader]


def test_plain_batches_equal_the_dataloaders():
    ds = numbered()
    mine = epoch(DeviceLoader(ds, batch_size=16))
    theirs = epoch(DataLoader(ds, batch_size=16, transform=transforms.Normalize(MEAN, STD), num_workers=0))
    assert [x.shape for x, _ in mine] == [(16, 3, 6, 6), (16, 3, 6, 6), (8, 3, 6, 6)]
    for (x, y), (tx, ty) in zip(mine, theirs):
        assert x.dtype == mt.float32 and y.dtype == mt.int64
        np.testing.assert_allclose(x.numpy(), tx.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(y.numpy(), ty.numpy())


def test_shuffled_epochs_visit_every_image_once_with_its_label():
    ds = numbered()
    loader = DeviceLoader(ds, batch_size=16, shuffle=True, seed=3)
    orders = []
    for _ in range(2):
        seen = []
        for x, y in loader:
            index = pixels(x)[:, 0, 0, 0] - 1
            np.testing.assert_array_equal(y.numpy(), index % 4)
            seen += list(index)
        assert sorted(seen) == list(range(40))
        orders.append(seen)
    assert orders[0] != orders[1]


def test_an_epoch_depends_on_seed_and_epoch_alone():
    """What `--resume` relies on: epoch 5 of a fresh loader is epoch 5 of one that ran 0..4."""
    ds = numbered()
    options = dict(batch_size=16, shuffle=True, seed=7, translate=2, flip="alternating", cutout=2)
    ran = DeviceLoader(ds, **options)
    for _ in range(5):
        epoch(ran)
    fresh = DeviceLoader(ds, **options)
    fresh.load_state_dict(ran.state_dict())
    assert fresh.epoch == 5
    for (a, ya), (b, yb) in zip(epoch(ran), epoch(fresh)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    other = DeviceLoader(ds, **{**options, "seed": 8})
    other.set_epoch(5)
    assert not np.array_equal(epoch(other)[0][0].numpy(), epoch(fresh)[0][0].numpy())


def flipped(x):
    """Whether each image of a batch shows its ramp right to left."""
    ramp = pixels(x)[:, 0, -1, :]
    return ramp[:, 0] > ramp[:, -1]


def test_alternating_flips_show_the_other_side_every_other_epoch():
    ds = numbered(n=200)
    loader = DeviceLoader(ds, batch_size=200, shuffle=True, flip="alternating")
    sides = []
    for _ in range(4):
        x, y = next(iter(loader))
        index = pixels(x)[:, 0, 0, 0] - 1
        side = np.empty(200, bool)
        side[index] = flipped(x)
        sides.append(side)
    assert 60 < sides[0].sum() < 140  # each image's first side is random
    np.testing.assert_array_equal(sides[1], ~sides[0])
    np.testing.assert_array_equal(sides[2], sides[0])
    np.testing.assert_array_equal(sides[3], ~sides[0])


def test_random_flips_are_drawn_anew_each_epoch():
    loader = DeviceLoader(numbered(n=200), batch_size=200, flip="random")
    first, second = (flipped(next(iter(loader))[0]) for _ in range(2))
    assert 60 < first.sum() < 140 and 60 < second.sum() < 140
    assert 0 < (first != second).sum() < 200


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_shifts_stay_within_translate(padding_mode):
    ds = numbered(n=100, side=8)
    x, _ = next(iter(DeviceLoader(ds, batch_size=100, translate=2, padding_mode=padding_mode)))
    ramp = pixels(x)[:, 0, -1, :]  # the ramp row, or the row 0..2 above it when shifted up
    if padding_mode == "zeros":
        row = pixels(x)[:, 0, :, 4]
        rows_of_image = (row != 0).sum(1)
        assert set(rows_of_image) <= {6, 7, 8} and len(set(rows_of_image)) > 1  # up to 2 rows of padding
    shifts = {int(r[4]) - 204 for r in ramp if r[4] >= 200}  # dx where the ramp is in view
    assert shifts <= {-2, -1, 0, 1, 2} and len(shifts) > 2


def test_cutout_blanks_a_square_to_the_mean():
    x, _ = next(iter(DeviceLoader(numbered(n=50, side=8), batch_size=50, cutout=4)))
    zero = (x.numpy() == 0).all(axis=1)  # 0 after normalisation in every channel: the mean colour
    counts = zero.sum(axis=(1, 2))
    assert counts.max() == 16 and counts.min() >= 4  # a 4x4 square, clipped at the border


def test_drop_last_dtype_and_prepare():
    ds = numbered()
    loader = DeviceLoader(ds, batch_size=16, drop_last=True, dtype=mt.bfloat16)
    batches = epoch(loader)
    assert len(loader) == len(batches) == 2 and batches[0][0].dtype == mt.bfloat16
    plain = DeviceLoader(ds, batch_size=40)
    np.testing.assert_allclose(plain.prepare(ds.images / np.float32(255)).numpy(), epoch(plain)[0][0].numpy(),
                               rtol=1e-6, atol=1e-6)


def test_declared_augmentation_and_bad_options():
    ds = numbered(side=16)
    assert declared_augmentation(ds) == {"translate": 2, "padding_mode": "zeros", "flip": "random"}
    with pytest.raises(ValueError, match="translate"):
        DeviceLoader(ds, translate=16)
    with pytest.raises(ValueError, match="flip"):
        DeviceLoader(ds, flip="sometimes")


@pytest.mark.gpu
@pytest.mark.skipif(not mt.cuda_is_available(), reason="no CUDA GPU (or CuPy not installed)")
def test_gpu_batches_are_the_numpy_version_of_the_same_draws():
    from mytensor.backend import get_backend
    ds = numbered(n=50, side=8)
    loader = DeviceLoader(ds, batch_size=16, shuffle=True, device="cuda", translate=2, padding_mode="reflect",
                          flip="alternating", cutout=3, dtype=mt.bfloat16)
    loader.set_epoch(3)
    draws = [None if a is None else a.get() for a in loader.epoch_draws(3)]
    cpu, (order, shifts, flips, corners) = get_backend("cpu"), draws
    for b, (x, y) in enumerate(loader):
        rows = slice(16 * b, 16 * (b + 1))
        want = cpu.augment_images(ds.images, order[rows], loader.scale.get(), loader.shift.get(), x.dtype.np,
                                  shifts[rows], flips[rows], True, corners[rows], 3)
        assert x.device.type == "cuda"
        np.testing.assert_array_equal(x.cpu().numpy(), want)
        np.testing.assert_array_equal(y.cpu().numpy(), ds.targets[order[rows]])


@pytest.mark.gpu
@pytest.mark.skipif(not mt.cuda_is_available(), reason="no CUDA GPU (or CuPy not installed)")
def test_as_tensor_shares_a_cupy_array():
    """How the loader hands out its batches without a copy, as torch.as_tensor shares CUDA memory."""
    import cupy
    arr = cupy.arange(3.0, dtype=cupy.float32)
    shared = mt.as_tensor(arr, device="cuda")
    arr[0] = 7
    assert shared.device.type == "cuda" and shared.tolist() == [7.0, 1.0, 2.0]
