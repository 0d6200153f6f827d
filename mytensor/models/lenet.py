"""LeNet-style networks: convolutions with pooling to extract features, then a small classifier."""
from .. import nn
from .registry import register_model


class LeNet5(nn.Module):
    """LeCun et al. (1998), with ReLU and max pooling: conv 6@5x5 (pad 2) -> pool
    -> conv 16@5x5 -> pool -> 120 -> 84 -> classes."""

    def __init__(self, num_classes=10, in_channels=1, image_size=28):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        side = (image_size // 2 - 4) // 2  # 28 -> 14 -> 10 -> 5
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class CifarLeNet(nn.Module):
    """A wider LeNet for colour images: two 3x3 convs (32, 64 channels, padding 1)
    each followed by 2x2 max pooling, then 512 -> 128 -> classes."""

    def __init__(self, num_classes=10, in_channels=3, image_size=32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        side = image_size // 4  # 32 -> 8
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 512), nn.ReLU(),
            nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("lenet5")
def lenet5(num_classes=10, in_channels=1, image_size=28):
    """Classic LeNet-5 (ReLU, max pooling) for 28x28 digits."""
    return LeNet5(num_classes, in_channels, image_size)


@register_model("cifar_lenet")
def cifar_lenet(num_classes=10, in_channels=3, image_size=32):
    """Two 3x3 conv layers (32, 64) with pooling and three linear layers, for CIFAR-10."""
    return CifarLeNet(num_classes, in_channels, image_size)
