"""Patch whitening (airbench's frozen first convolution) and nn.init.dirac_, against PyTorch."""
import numpy as np
import pytest
import torch

import mytensor as mt
from mytensor import nn
from mytensor.nn.modules.whitening import patch_covariance, whitening_weight


def images(seed=0, n=12, side=9):
    """Correlated channels and neighbours, as in photographs: smoothed noise mixed across channels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, side + 1, side + 1))
    x = (x[:, :, 1:, 1:] + x[:, :, :-1, 1:] + x[:, :, 1:, :-1]) / 3
    return (np.einsum("dc,nchw->ndhw", [[1, 0.5, 0.2], [0.3, 1, 0.4], [0.1, 0.6, 1]], x)).astype(np.float32)


def torch_whitening(x, k, eps):
    """The same construction written with PyTorch: unfold, covariance, eigh, both signs."""
    x = torch.tensor(x, dtype=torch.float64)
    c = x.shape[1]
    patches = x.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
    cov = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    filters = (eigenvectors.T.flip(0) / torch.sqrt(eigenvalues.flip(0) + eps)[:, None]).reshape(-1, c, k, k)
    return cov.numpy(), torch.cat([filters, -filters]).numpy()


@pytest.mark.parametrize("k", [2, 3])
def test_covariance_and_filters_match_torch(k):
    x = images()
    cov, want = torch_whitening(x, k, 5e-4)
    np.testing.assert_allclose(patch_covariance(mt.tensor(x), k).numpy(), cov, rtol=1e-5, atol=1e-6)
    got = whitening_weight(mt.tensor(x), k, 5e-4)
    assert got.shape == (2 * 3 * k * k, 3, k, k)
    half = 3 * k * k
    for i in range(half):  # an eigenvector's sign is arbitrary: each filter matches up to it
        sign = np.sign((got[i] * want[i]).sum())
        np.testing.assert_allclose(got[i] * sign, want[i], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[half + i], -got[i])


def test_whitened_patches_are_decorrelated():
    x = mt.tensor(images(1, n=40))
    layer = nn.PatchWhitening(3, kernel_size=2, eps=1e-6).fit(x)
    with mt.no_grad():
        y = layer(x).numpy()[:, :12]  # the first sign of each filter
    feats = y.transpose(1, 0, 2, 3).reshape(12, -1)
    np.testing.assert_allclose(feats @ feats.T / feats.shape[1], np.eye(12), atol=2e-3)


def test_patch_whitening_is_frozen_but_its_bias_learns():
    layer = nn.PatchWhitening(3)
    assert layer.weight.shape == (24, 3, 2, 2) and not layer.weight.requires_grad
    assert layer.bias.requires_grad and not layer.bias.detach().numpy().any()
    x = mt.tensor(images(2))
    layer.fit(x)
    layer(x).sum().backward()
    assert layer.weight.grad is None and layer.bias.grad is not None
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["bias"]


@pytest.mark.parametrize("shape,groups", [((6, 3, 3, 3), 1), ((4, 6, 3), 1), ((8, 2, 3, 3), 2), ((3, 5, 1, 3, 3), 1)])
def test_dirac_matches_torch(shape, groups):
    mine, theirs = mt.randn(*shape), torch.randn(*shape)
    nn.init.dirac_(mine, groups)
    torch.nn.init.dirac_(theirs, groups)
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_dirac_on_a_view_sets_the_first_filters_only():
    """airbench's convolution init: the identity on the first in_channels filters, the rest kept."""
    w = mt.randn(8, 4, 3, 3)
    rest = w.numpy()[4:].copy()
    nn.init.dirac_(w[:4])
    np.testing.assert_array_equal(w.numpy()[4:], rest)
    assert w.numpy()[:4, :, 1, 1].tolist() == np.eye(4).tolist()
