"""Patch whitening: a first convolution fitted to the data instead of learned (airbench's stem).

Neighbouring pixels and the colour channels of a natural image are strongly correlated. The
filters that are the eigenvectors of the covariance of the k x k patches, each divided by
sqrt(eigenvalue + eps), turn every patch into decorrelated features of about unit variance, so
the layers after start from whitened input and train faster. Each filter is kept with both
signs (the nonlinearity after it then loses no direction); the filters stay frozen, only the
bias (starting at 0) learns.
"""
import numpy as np

from ...autograd.grad_mode import no_grad
from ...creation import tensor
from ...ops.shape import stack
from .. import init
from .conv import Conv2d


def patch_covariance(images, kernel_size=2):
    """The (C*k*k, C*k*k) second moment of every k x k patch (stride 1) of images (N, C, H, W),
    a patch flattened as (channel, row, column), the order of a convolution weight's."""
    n, c, h, w = images.shape
    k = kernel_size
    patches = stack([images[:, :, i:h - k + 1 + i, j:w - k + 1 + j] for i in range(k) for j in range(k)], dim=2)
    flat = patches.reshape(n, c * k * k, -1).permute(1, 0, 2).reshape(c * k * k, -1)
    return flat @ flat.T / flat.shape[1]


def whitening_weight(images, kernel_size=2, eps=5e-4):
    """Filters (2*C*k*k, C, k, k) that whiten the k x k patches of `images`: the eigenvectors of
    their covariance, the largest eigenvalue first, each divided by sqrt(eigenvalue + eps), and
    then the same filters negated."""
    c, k = images.shape[1], kernel_size
    with no_grad():
        covariance = patch_covariance(images, k).numpy().astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    filters = (eigenvectors[:, ::-1] / np.sqrt(eigenvalues[::-1] + eps)).T.reshape(-1, c, k, k)
    return np.concatenate([filters, -filters])


class PatchWhitening(Conv2d):
    """Conv2d(in_channels, 2 * in_channels * k * k, k) with frozen filters set by `fit(images)`,
    and a bias that starts at 0 (see the module docstring)."""

    def __init__(self, in_channels, kernel_size=2, eps=5e-4, bias=True, device=None, dtype=None):
        super().__init__(in_channels, 2 * in_channels * kernel_size ** 2, kernel_size, bias=bias, device=device,
                         dtype=dtype)
        self.eps = eps
        self.weight.requires_grad_(False)
        if self.bias is not None:
            init.zeros_(self.bias)

    def fit(self, images):
        """Set the filters from images (N, C, H, W), normalised as the network's inputs are."""
        weight = whitening_weight(images, self.kernel_size[0], self.eps)
        with no_grad():
            self.weight.copy_(tensor(weight, dtype=self.weight.dtype, device=self.weight.device))
        return self
