"""PyTorch twins of `mytensor.models`: the same layers, widths and shapes, so
the end-to-end benchmarks compare the frameworks on identical networks
(weights are not copied; speed does not depend on them). `tests/test_benchmarks.py`
checks that every twin has exactly the parameter shapes of its original.
"""
import torch
from torch import nn


def mlp(num_classes=10, in_channels=1, image_size=28):
    features = in_channels * image_size * image_size
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                         nn.Linear(256, num_classes))


class _Features(nn.Module):
    """`features` then `classifier`, the layout of mytensor's LeNets and plain CNNs."""

    def __init__(self, features, classifier):
        super().__init__()
        self.features, self.classifier = features, classifier

    def forward(self, x):
        return self.classifier(self.features(x))


def lenet5(num_classes=10, in_channels=1, image_size=28):
    side = (image_size // 2 - 4) // 2
    return _Features(
        nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                      nn.Linear(84, num_classes)))


def cifar_lenet(num_classes=10, in_channels=3, image_size=32):
    side = image_size // 4
    return _Features(
        nn.Sequential(nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, 512), nn.ReLU(), nn.Linear(512, 128), nn.ReLU(),
                      nn.Linear(128, num_classes)))


def simple_conv(num_classes=10, in_channels=1, image_size=28, channels=32, hidden=128):
    side = image_size // 2
    return _Features(
        nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, hidden), nn.ReLU(),
                      nn.Linear(hidden, num_classes)))


def cifar_cnn3(num_classes=10, in_channels=3, image_size=32):
    side = image_size // 4
    model = _Features(
        nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(), nn.Linear(32 * side * side, 256), nn.ReLU(), nn.Linear(256, num_classes)))
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


class BasicBlock(nn.Module):
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


class ResNet(nn.Module):
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


def resnet_small(num_classes=10, in_channels=3, image_size=32):
    if image_size <= 32:
        return ResNet(num_classes, in_channels, widths=(16, 32, 64), blocks=(2, 2, 2))
    return ResNet(num_classes, in_channels, widths=(32, 64, 128), blocks=(1, 1, 1))


def resnet18(num_classes=200, in_channels=3, image_size=64):
    return ResNet(num_classes, in_channels, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2))


def _conv_bn(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class _Residual(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return x + self.f(x)


class ResNet9(nn.Module):
    def __init__(self, num_classes=10, in_channels=3, image_size=32):
        super().__init__()
        self.prep = _conv_bn(in_channels, 64)
        self.layer1 = nn.Sequential(_conv_bn(64, 128), nn.MaxPool2d(2),
                                    _Residual(nn.Sequential(_conv_bn(128, 128), _conv_bn(128, 128))))
        self.layer2 = nn.Sequential(_conv_bn(128, 256), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(_conv_bn(256, 512), nn.MaxPool2d(2),
                                    _Residual(nn.Sequential(_conv_bn(512, 512), _conv_bn(512, 512))))
        self.pool = nn.MaxPool2d(image_size // 8)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512, num_classes, bias=False)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.fc(self.flatten(self.pool(x))) * 0.125


def resnet9(num_classes=10, in_channels=3, image_size=32):
    return ResNet9(num_classes, in_channels, image_size)


class _ConvGroup(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = nn.BatchNorm2d(c_out, eps=1e-12, momentum=0.4)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out, eps=1e-12, momentum=0.4)
        self.activ = nn.GELU()
        for norm in (self.norm1, self.norm2):
            norm.weight.requires_grad_(False)

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Airbench94(nn.Module):
    """mytensor.models.Airbench94; the whitening filters are whatever they are given (frozen)."""

    def __init__(self, num_classes=10, in_channels=3, image_size=32, widths=(64, 256, 256)):
        super().__init__()
        self.whiten = nn.Conv2d(in_channels, 8 * in_channels, 2)
        self.whiten.weight.requires_grad_(False)
        self.activ = nn.GELU()
        channels, groups = 8 * in_channels, []
        for width in widths:
            groups.append(_ConvGroup(channels, width))
            channels = width
        self.groups = nn.Sequential(*groups)
        self.pool = nn.MaxPool2d(3)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(channels * ((image_size - 1) // 8 // 3) ** 2, num_classes, bias=False)

    def forward(self, x):
        x = self.pool(self.groups(self.activ(self.whiten(x))))
        return self.head(self.flatten(x)) / 9


def airbench94(num_classes=10, in_channels=3, image_size=32):
    return Airbench94(num_classes, in_channels, image_size)


_BUILDERS = {f.__name__: f for f in (mlp, lenet5, cifar_lenet, simple_conv, cifar_cnn3, resnet_small, resnet18,
                                            resnet9, airbench94)}


def get_model(name, num_classes=10, in_channels=1, image_size=28) -> torch.nn.Module:
    if name not in _BUILDERS:
        raise ValueError(f"no PyTorch twin for {name!r}; have {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size)
