"""`torchvision.utils.make_grid` / `save_image`: a batch of images as one picture, for looking at
samples and reconstructions. Values are read back to the host: call it outside the training step."""
import numpy as np

from ..tensor import Tensor


def make_grid(tensor, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False, pad_value=0.0):
    """(N, C, H, W) images (or a list of (C, H, W)) tiled `nrow` to a row: a (3, H', W') Tensor
    (one-channel images repeated to three, as torchvision does)."""
    if isinstance(tensor, (list, tuple)):
        arr = np.stack([t.detach().cpu().numpy() for t in tensor])
    else:
        arr = tensor.detach().cpu().numpy()
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 3:
        arr = arr[None] if arr.shape[0] in (1, 3) else arr[:, None]
    arr = arr.astype(np.float32, copy=True)
    if arr.shape[1] == 1:
        arr = np.repeat(arr, 3, axis=1)
    if normalize:
        def scale(a):
            lo, hi = value_range if value_range is not None else (a.min(), a.max())
            return (np.clip(a, lo, hi) - lo) / max(hi - lo, 1e-5)
        arr = np.stack([scale(a) for a in arr]) if scale_each else scale(arr)
    n, c, h, w = arr.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = np.full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value, np.float32)
    for k in range(n):
        y, x = divmod(k, cols)
        top, left = y * (h + padding) + padding, x * (w + padding) + padding
        grid[:, top:top + h, left:left + w] = arr[k]
    return Tensor(grid)


def save_image(tensor, fp, format=None, **grid_options):
    """Write images in [0, 1] (a batch is tiled with `make_grid` first) to a PNG or other file."""
    from PIL import Image
    grid = make_grid(tensor, **grid_options).numpy()
    pixels = np.clip(grid * 255 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(pixels).save(fp, format=format)
