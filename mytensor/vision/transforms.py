"""torchvision-style transforms: one sample at a time, on PIL images and (C, H, W) Tensors.

    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(mean, std)])
    dataset = datasets.CIFAR10("data", train=True, transform=transform)

Random choices come from the CPU backend's generator, so `mytensor.manual_seed` repeats
them (DataLoader worker threads share that generator: with workers, the order in
which samples draw from it, and so each sample's crop, may vary between runs).
"""
import numbers

import numpy as np

from .. import unsupported
from ..random import default_rng
from ..tensor import Tensor

__getattr__ = unsupported.module_getattr("torchvision.transforms", __name__)


def _is_pil(img):
    from PIL import Image
    return isinstance(img, Image.Image)


def _pair(size):
    return (int(size), int(size)) if isinstance(size, numbers.Number) else tuple(int(s) for s in size)


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class Lambda:
    def __init__(self, lambd):
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)


class ToTensor:
    """PIL image or (H, W, C) array -> float32 (C, H, W) Tensor; 8-bit pixels are scaled to [0, 1]."""

    def __call__(self, pic):
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise TypeError(f"ToTensor expects a PIL image or an (H, W, C) array, got shape {arr.shape}")
        chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if chw.dtype == np.uint8:
            chw = np.multiply(chw, np.float32(1 / 255), dtype=np.float32)
        elif _is_pil(pic) or chw.dtype == np.bool_:
            chw = chw.astype(np.float32)
        return Tensor(chw)

    def __repr__(self):
        return "ToTensor()"


class PILToTensor:
    """PIL image -> uint8 (C, H, W) Tensor, values unchanged."""

    def __call__(self, pic):
        arr = np.asarray(pic)
        return Tensor(np.ascontiguousarray((arr[:, :, None] if arr.ndim == 2 else arr).transpose(2, 0, 1)))


class ToPILImage:
    def __init__(self, mode=None):
        self.mode = mode

    def __call__(self, pic):
        from PIL import Image
        arr = pic.detach().cpu().numpy() if isinstance(pic, Tensor) else np.asarray(pic)
        if isinstance(pic, Tensor):
            arr = arr.transpose(1, 2, 0)
            if arr.dtype != np.uint8:
                arr = np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, self.mode)


class Normalize:
    """(x - mean) / std per channel of a float (C, H, W) or (N, C, H, W) Tensor."""

    def __init__(self, mean, std, inplace=False):
        self.mean, self.std, self.inplace = tuple(np.atleast_1d(mean).tolist()), tuple(np.atleast_1d(std).tolist()), \
            inplace
        if len(self.mean) != len(self.std) or min(self.std) <= 0:
            raise ValueError(f"Normalize needs one positive std per mean, got mean={mean} std={std}")

    def __call__(self, tensor):
        if not isinstance(tensor, Tensor) or not tensor.is_floating_point() or tensor.ndim < 3:
            raise TypeError("Normalize expects a float Tensor of shape (C, H, W) or (N, C, H, W); apply ToTensor() "
                            "first")
        c = tensor.shape[-3]
        if len(self.mean) not in (1, c):
            raise ValueError(f"Normalize has {len(self.mean)} channel(s) of mean/std but the image has {c}")
        mean = Tensor(np.array(self.mean).reshape(-1, 1, 1), dtype=tensor.dtype, device=tensor.device)
        std = Tensor(np.array(self.std).reshape(-1, 1, 1), dtype=tensor.dtype, device=tensor.device)
        return (tensor - mean) / std

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


def _size(img):
    """(height, width) of a PIL image or a (..., H, W) Tensor."""
    return (img.size[1], img.size[0]) if _is_pil(img) else tuple(img.shape[-2:])


def _crop(img, top, left, h, w):
    if _is_pil(img):
        return img.crop((left, top, left + w, top + h))
    return img[..., top:top + h, left:left + w]


def _pad(img, padding, fill=0, padding_mode="constant"):
    """padding: an int, (left/right, top/bottom) or (left, top, right, bottom), as torchvision's."""
    p = (padding,) * 4 if isinstance(padding, numbers.Number) else tuple(padding)
    left, top, right, bottom = p * 2 if len(p) == 2 else p
    if _is_pil(img):
        from PIL import Image
        arr = np.asarray(img)
        widths = ((top, bottom), (left, right)) + (((0, 0),) if arr.ndim == 3 else ())
        kw = {"constant_values": fill} if padding_mode == "constant" else {}
        return Image.fromarray(np.pad(arr, widths, mode=padding_mode, **kw))
    if padding_mode != "constant":
        raise NotImplementedError(f"torchvision.transforms.Pad(padding_mode={padding_mode!r}) on a Tensor: "
                                  f"pad the PIL image (before ToTensor) instead")
    from ..nn.functional import pad
    return pad(img, (left, right, top, bottom), value=fill)


class Pad:
    def __init__(self, padding, fill=0, padding_mode="constant"):
        self.padding, self.fill, self.padding_mode = padding, fill, padding_mode

    def __call__(self, img):
        return _pad(img, self.padding, self.fill, self.padding_mode)


class CenterCrop:
    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, img):
        (h, w), (th, tw) = _size(img), self.size
        return _crop(img, int(round((h - th) / 2)), int(round((w - tw) / 2)), th, tw)


class RandomCrop:
    """Pad by `padding`, then cut a random `size` window: small random shifts."""

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant"):
        self.size, self.padding, self.pad_if_needed = _pair(size), padding, pad_if_needed
        self.fill, self.padding_mode = fill, padding_mode

    def __call__(self, img):
        if self.padding is not None:
            img = _pad(img, self.padding, self.fill, self.padding_mode)
        (h, w), (th, tw) = _size(img), self.size
        if self.pad_if_needed and (h < th or w < tw):
            img = _pad(img, (max(tw - w, 0), max(th - h, 0)), self.fill, self.padding_mode)
            h, w = _size(img)
        if h < th or w < tw:
            raise ValueError(f"RandomCrop of size {self.size} is larger than the (padded) image {(h, w)}")
        rng = default_rng()
        return _crop(img, int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1)), th, tw)

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        if default_rng().random() >= self.p:
            return img
        if _is_pil(img):
            from PIL import Image
            return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img.flip(-1)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomVerticalFlip(RandomHorizontalFlip):
    def __call__(self, img):
        if default_rng().random() >= self.p:
            return img
        if _is_pil(img):
            from PIL import Image
            return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        return img.flip(-2)


class Resize:
    """Resize a PIL image (bilinear): to `size` (h, w), or its shorter side to an int `size`."""

    def __init__(self, size, interpolation=None, max_size=None, antialias=True):
        self.size, self.interpolation = size, interpolation

    def __call__(self, img):
        from PIL import Image
        if not _is_pil(img):
            raise NotImplementedError("torchvision.transforms.Resize on a Tensor: resize the PIL image (before "
                                      "ToTensor) instead")
        h, w = _size(img)
        if isinstance(self.size, numbers.Number):
            s = int(self.size)
            th, tw = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
        else:
            th, tw = _pair(self.size)
        return img.resize((tw, th), self.interpolation if self.interpolation is not None else Image.BILINEAR)


class Grayscale:
    def __init__(self, num_output_channels=1):
        self.num_output_channels = num_output_channels

    def __call__(self, img):
        out = img.convert("L")
        return out if self.num_output_channels == 1 else out.convert("RGB")
