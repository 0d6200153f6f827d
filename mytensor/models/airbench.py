"""airbench94: Keller Jordan's CIFAR-10 speed-run network (94% in seconds on one GPU).

A frozen patch-whitening stem (`nn.PatchWhitening`, fitted to the training images), then three
groups of conv-pool-BN-GELU-conv-BN-GELU (widths 64, 256, 256; no residuals), a 3x3 max pool and a
linear layer without bias whose logits are scaled by 1/9. Its batch norms keep their weight frozen
at 1 (only the shift learns), with eps 1e-12 and a running-statistics momentum of 0.4, and each
convolution starts with its first in_channels filters passing their input straight through.

airbench94_muon's network is the same but for where it starts and the head's scale: its head's
weight has a standard deviation of 1 and its logits are divided by the head's width (256), and its
whitening bias starts as a PyTorch Conv2d's. With 1/9 and PyTorch's Linear init the logits start
about as large (9 * sqrt(3 * 256) = 249), but the head's lr is tuned for its own scale.
"""
import math

from .. import nn, no_grad
from ..nn.modules.container import batch_norm_activation
from .registry import register_model


def conv3x3(in_channels, out_channels):
    """A 3x3 'same' convolution without bias, its first in_channels filters the identity (dirac)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    with no_grad():
        nn.init.dirac_(conv.weight[:min(in_channels, out_channels)])
    return conv


def batch_norm(channels):
    """BatchNorm2d with its weight frozen at 1: the convolution before it sets the scale."""
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    norm.weight.requires_grad_(False)
    return norm


class ConvGroup(nn.Module):
    """conv3x3 -> 2x2 max pool -> BN -> GELU -> conv3x3 -> BN -> GELU: half the side, new width
    (each BN and its GELU one fused op)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = batch_norm(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.norm2 = batch_norm(out_channels)
        self.activ = nn.GELU()

    def forward(self, x):
        x = batch_norm_activation(self.norm1, self.activ, self.pool(self.conv1(x)))
        return batch_norm_activation(self.norm2, self.activ, self.conv2(x))


class Airbench94(nn.Module):
    """The network of the module docstring, for images of `in_channels` x `image_size`^2."""

    def __init__(self, num_classes=10, in_channels=3, image_size=32, widths=(64, 256, 256), scale=1 / 9):
        super().__init__()
        self.whiten = nn.PatchWhitening(in_channels, kernel_size=2)
        self.activ = nn.GELU()
        groups, channels = [], self.whiten.out_channels
        for width in widths:
            groups.append(ConvGroup(channels, width))
            channels = width
        self.groups = nn.Sequential(*groups)
        self.pool = nn.MaxPool2d(3)
        side = image_size - 1  # the 2x2 whitening has no padding
        for _ in widths:
            side //= 2
        self.flatten = nn.Flatten()
        self.head = nn.Linear(channels * (side // 3) ** 2, num_classes, bias=False)
        self.scale = scale

    def forward(self, x):
        x = self.pool(self.groups(self.activ(self.whiten(x))))
        return self.head(self.flatten(x)) * self.scale


@register_model("airbench94")
def airbench94(num_classes=10, in_channels=3, image_size=32):
    """airbench94's network: whitening stem, conv-BN-GELU groups of 64/256/256, no residuals."""
    if image_size < 24:
        raise ValueError(f"airbench94 needs images of at least 24x24, got {image_size}")
    return Airbench94(num_classes, in_channels, image_size)


@register_model("airbench94_muon")
def airbench94_muon(num_classes=10, in_channels=3, image_size=32):
    """airbench94_muon's network: airbench94's, with the head and whitening bias of the module docstring."""
    model = airbench94(num_classes, in_channels, image_size)
    model.scale = 1 / model.head.in_features
    bound = 1 / math.sqrt(model.whiten.weight[0].numel())  # PyTorch's Conv2d bias init: 1 / sqrt(fan_in)
    with no_grad():
        model.head.weight /= model.head.weight.std()
        nn.init.uniform_(model.whiten.bias, -bound, bound)
    return model
