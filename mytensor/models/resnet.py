"""A small residual network (He et al., 2016) with batch normalisation.

A residual block learns a correction F(x) added to its input, out = relu(F(x) + x):
gradients flow straight through the addition, so deeper networks still train.
"""
from .. import nn
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
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetSmall(nn.Module):
    """Stem conv3x3 -> BN -> ReLU, three stages of BasicBlocks (the 2nd and 3rd
    start with stride 2), global average pooling, Linear."""

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
        return ResNetSmall(num_classes, in_channels, widths=(16, 32, 64), blocks=(2, 2, 2))
    return ResNetSmall(num_classes, in_channels, widths=(32, 64, 128), blocks=(1, 1, 1))
