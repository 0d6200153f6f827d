import numpy as np
import pytest

from mytensor.data import transforms as T


def batch(n=6, c=3, h=5, w=7, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


def test_flip_is_a_mirror():
    x = batch()
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0.0)(x), x)
    out = T.RandomHorizontalFlip(p=0.5)(batch(n=64), rng=np.random.default_rng(1))
    flipped = [np.array_equal(o, i[..., ::-1]) for o, i in zip(out, batch(n=64))]
    kept = [np.array_equal(o, i) for o, i in zip(out, batch(n=64))]
    assert all(f or k for f, k in zip(flipped, kept)) and 16 < sum(flipped) < 48


def test_crop_without_padding_to_full_size_is_identity():
    x = batch()
    np.testing.assert_array_equal(T.RandomCrop((5, 7))(x), x)


def test_crop_with_padding_content():
    x = batch(n=20, h=6, w=6) + 1  # all values >= 1, so padding zeros are recognisable
    p = 2
    out = T.RandomCrop(6, padding=p)(x, rng=np.random.default_rng(0))
    assert out.shape == (20, 3, 6, 6) and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    offsets = set()
    for i in range(len(x)):
        matches = [(t, l) for t in range(2 * p + 1) for l in range(2 * p + 1)
                   if np.array_equal(out[i], padded[i, :, t:t + 6, l:l + 6])]
        assert matches, f"image {i} is not a window of its padded self"
        offsets.add(matches[0])
    assert len(offsets) > 5  # offsets differ between images


def test_crop_smaller_and_reflect_padding():
    x = batch(h=8, w=8)
    out = T.RandomCrop((4, 3))(x, rng=np.random.default_rng(0))
    assert out.shape == (6, 3, 4, 3)
    out = T.RandomCrop(8, padding=3, padding_mode="reflect")(x)
    assert out.shape == x.shape and out.min() > 0
    with pytest.raises(ValueError, match="larger than the"):
        T.RandomCrop(9)(x)


def test_random_transforms_are_seedable():
    x = batch(n=32)
    a = T.RandomCrop(5, padding=2, seed=3)(x)
    b = T.RandomCrop(5, padding=2, seed=3)(x)
    np.testing.assert_array_equal(a, b)
    c = T.RandomCrop(5, padding=2)(x, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, c)


def test_normalize():
    x = batch()
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    out = T.Normalize(mean, std)(x)
    want = (x - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    assert out.dtype == np.float32
    u8 = (x * 255).astype(np.uint8)
    np.testing.assert_allclose(T.Normalize(mean, std)(u8), T.Normalize(mean, std)(u8 / np.float32(255)), atol=1e-5)
    with pytest.raises(ValueError, match="1 channel"):
        T.Normalize((0.5,), (0.5,))(x)
    with pytest.raises(ValueError, match="positive std"):
        T.Normalize((0.5,), (0.0,))


def test_compose_order_and_plain_functions():
    x = batch()
    t = T.Compose([T.RandomHorizontalFlip(p=1.0), lambda b: b * 2, T.Lambda(lambda b, rng: b + 1, takes_rng=True)])
    np.testing.assert_allclose(t(x, rng=np.random.default_rng(0)), x[..., ::-1] * 2 + 1)
    np.testing.assert_array_equal(T.ToFloat()(np.array([[[[255]]]], np.uint8)), [[[[1.0]]]])
    assert "RandomHorizontalFlip(p=1.0)" in repr(t)


def test_each_dataset_declares_its_augmentation(tmp_path):
    from mytensor.data import CIFAR10, MNIST, FashionMNIST, ImageDataset, Subset, TinyImageNet

    def steps(cls, shape):
        ds = cls.__new__(cls)
        ds.images = np.zeros((1,) + shape, np.uint8)
        return [(type(s), getattr(s, "padding", None)) for s in T.augmentation(ds)]

    flip = (T.RandomHorizontalFlip, None)
    assert steps(CIFAR10, (3, 32, 32)) == [(T.RandomCrop, 4), flip]
    assert steps(MNIST, (1, 28, 28)) == [(T.RandomCrop, 2)]  # no flips: a mirrored 3 is not a 3
    assert steps(FashionMNIST, (1, 28, 28)) == [(T.RandomCrop, 2), flip]
    assert steps(TinyImageNet, (3, 64, 64)) == [(T.RandomCrop, 4), flip]  # the recipe's, not 64 // 8
    assert steps(ImageDataset, (3, 96, 96)) == [(T.RandomCrop, 12), flip]  # an image folder: an eighth
    folder = ImageDataset(np.zeros((4, 3, 16, 16), np.uint8), [0, 1, 0, 1], ["a", "b"])
    crop = T.augmentation(Subset(folder, [0, 2]))[0]
    assert crop.size == (16, 16) and crop.padding == 2
