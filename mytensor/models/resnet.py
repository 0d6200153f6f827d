"""Residual networks (He et al., 2016) with batch normalisation.

A residual block learns a correction F(x) added to its input, out = relu(F(x) + x):
gradients flow straight through the addition, so deeper networks still train.
"""
from .. import nn
from ..nn.modules.container import batch_norm_activation
from .registry import register_model


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the input; where the block
    halves the resolution or changes the width, the input goes through a
    1x1 conv (stride 2) and BN so that the shapes match."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = batch_norm_activation(self.bn1, self.relu, self.conv1(x))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv3x3 (stride 1, no max-pool) -> BN -> ReLU, a stage of BasicBlocks
    per width (every stage after the first starts with stride 2), global average
    pooling, Linear. The stem of He et al.'s CIFAR networks: the ImageNet stem
    (7x7 stride 2 and a max-pool) would shrink a 64x64 image to 16x16 at once."""

    def __init__(self, num_classes=10, in_channels=3, widths=(16, 32, 64), blocks=(2, 2, 2)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, channels = [], widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                stages.append(BasicBlock(channels, width, stride=2 if i > 0 and j == 0 else 1))
                channels = width
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))


@register_model("resnet_small")
def resnet_small(num_classes=10, in_channels=3, image_size=32):
    """ResNet with BatchNorm: widths 16/32/64 and two blocks per stage up to 32x32
    images (CIFAR-10), widths 32/64/128 and one block per stage for larger ones (Tiny ImageNet)."""
    if image_size <= 32:
        return ResNet(num_classes, in_channels, widths=(16, 32, 64), blocks=(2, 2, 2))
    return ResNet(num_classes, in_channels, widths=(32, 64, 128), blocks=(1, 1, 1))


@register_model("resnet18")
def resnet18(num_classes=200, in_channels=3, image_size=64):
    """ResNet-18 for 32x32 and 64x64 images: the standard stages (widths 64, 128, 256, 512,
    two BasicBlocks each), with a 3x3 stride-1 stem and no max-pool (see `ResNet`), so a
    64x64 image reaches the last stage at 8x8, where the ImageNet stem would leave 2x2."""
    return ResNet(num_classes, in_channels, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2))


def conv_bn(in_channels, out_channels):
    """conv3x3 (no bias: BN's shift replaces it) -> BN -> ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


class Residual(nn.Module):
    """x + f(x)."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return x + self.f(x)


class ResNet9(nn.Module):
    """The DAWNBench ResNet-9 (Myrtle.ai's CIFAR-10 network): prep conv 64; conv 128 + max
    pool + a residual of two convs; conv 256 + pool; conv 512 + pool + a residual of two
    convs; global max pool; Linear; the output scaled by 0.125 (softer initial logits)."""

    def __init__(self, num_classes=10, in_channels=3, image_size=32, scale=0.125):
        super().__init__()
        self.prep = conv_bn(in_channels, 64)
        self.layer1 = nn.Sequential(conv_bn(64, 128), nn.MaxPool2d(2),
                                    Residual(nn.Sequential(conv_bn(128, 128), conv_bn(128, 128))))
        self.layer2 = nn.Sequential(conv_bn(128, 256), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(conv_bn(256, 512), nn.MaxPool2d(2),
                                    Residual(nn.Sequential(conv_bn(512, 512), conv_bn(512, 512))))
        self.pool = nn.MaxPool2d(image_size // 8)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512, num_classes, bias=False)
        self.scale = scale

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.fc(self.flatten(self.pool(x))) * self.scale


@register_model("resnet9")
def resnet9(num_classes=10, in_channels=3, image_size=32):
    """ResNet-9 for CIFAR-sized images (the side must be a multiple of 8)."""
    if image_size % 8:
        raise ValueError(f"resnet9 needs an image side that is a multiple of 8, got {image_size}")
    return ResNet9(num_classes, in_channels, image_size)
