"""`augment_images`, the backend's batch gather + augmentation + normalisation: the NumPy version
against a pixel-by-pixel loop written from its definition and against torch's padding. The CUDA
kernel (augment.cu) is compared with this NumPy version in tests/test_cuda_backend.py."""
import numpy as np
import pytest
import torch

from mytensor.backend import get_backend


def reference(images, index, scale, shift, translate, flip, reflect, cutout, size):
    """The definition, one output pixel at a time."""
    _, c, h, w = images.shape
    out = np.zeros((len(index), c, h, w), np.float32)
    for b, i in enumerate(index):
        for ch in range(c):
            for y in range(h):
                for x in range(w):
                    if cutout is not None and cutout[b, 0] <= y < cutout[b, 0] + size \
                            and cutout[b, 1] <= x < cutout[b, 1] + size:
                        continue
                    u, v = (y, x) if translate is None else (y + translate[b, 0], x + translate[b, 1])
                    if reflect:
                        u = -u if u < 0 else (2 * (h - 1) - u if u >= h else u)
                        v = -v if v < 0 else (2 * (w - 1) - v if v >= w else v)
                    pixel = 0
                    if 0 <= u < h and 0 <= v < w:
                        pixel = images[i, ch, u, w - 1 - v if flip is not None and flip[b] else v]
                    out[b, ch, y, x] = np.float32(pixel) * scale[ch] + shift[ch]
    return out


def case(seed, n=6, c=3, h=5, w=7, batch=4, shift_max=2, cutout=True):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    index = rng.integers(0, n, batch)
    std, mean = rng.uniform(0.2, 0.3, c).astype(np.float32), rng.uniform(0.4, 0.5, c).astype(np.float32)
    scale, shift = (1 / (255 * std)).astype(np.float32), (-mean / std).astype(np.float32)
    translate = rng.integers(-shift_max, shift_max + 1, (batch, 2)).astype(np.int32)
    flip = rng.random(batch) < 0.5
    corner = rng.integers(-1, max(h, w), (batch, 2)).astype(np.int32) if cutout else None
    return images, index, scale, shift, translate, flip, corner


@pytest.mark.parametrize("reflect", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_numpy_version_matches_the_definition(seed, reflect):
    images, index, scale, shift, translate, flip, corner = case(seed)
    got = get_backend("cpu").augment_images(images, index, scale, shift, np.float32, translate, flip, reflect,
                                           corner, 2)
    np.testing.assert_array_equal(got, reference(images, index, scale, shift, translate, flip, reflect, corner, 2))


def test_no_options_is_the_normalised_gather():
    images, index, scale, shift, *_ = case(0)
    got = get_backend("cpu").augment_images(images, index, scale, shift, np.float64)
    want = images[index].astype(np.float32) * scale[:, None, None] + shift[:, None, None]
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want.astype(np.float64))


@pytest.mark.parametrize("reflect", [False, True])
def test_translation_is_a_crop_of_the_padded_image_as_torch_pads_it(reflect):
    """(dy, dx) = the crop's corner in the image padded by 2, less 2: torch's F.pad, reflect or zeros."""
    images, index, _, _, translate, flip, _ = case(1, h=6, w=6)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    got = get_backend("cpu").augment_images(images, index, ones, zeros, np.float32, translate, flip, reflect)
    padded = torch.nn.functional.pad(torch.tensor(images[index], dtype=torch.float32), (2, 2, 2, 2),
                                     mode="reflect" if reflect else "constant")
    for b, (dy, dx) in enumerate(translate):
        view = padded[b].flip(-1) if flip[b] else padded[b]
        np.testing.assert_array_equal(got[b], view[:, 2 + dy:8 + dy, 2 + dx:8 + dx].numpy())

