"""Small plain convolutional networks."""
from .. import nn
from .registry import register_model


class SimpleConv(nn.Module):
    """The smallest CNN: one 3x3 conv (32 channels) -> ReLU -> 2x2 max pool -> 128 -> classes."""

    def __init__(self, num_classes=10, in_channels=1, image_size=28, channels=32, hidden=128):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        side = image_size // 2
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, hidden), nn.ReLU(),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class CifarCNN3(nn.Module):
    """Three 3x3 convs (8, 16, 32 channels) with ReLU, pooling after the 2nd and
    3rd, then 256 -> classes; He (Kaiming normal) initialisation, suited to ReLU."""

    def __init__(self, num_classes=10, in_channels=3, image_size=32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        side = image_size // 4  # 32 -> 8, so 32 * 8 * 8 = 2048 features
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * side * side, 256), nn.ReLU(),
                                        nn.Linear(256, num_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("simple_conv")
def simple_conv(num_classes=10, in_channels=1, image_size=28):
    """One conv layer and two linear layers: a first step beyond the MLP."""
    return SimpleConv(num_classes, in_channels, image_size)


@register_model("cifar_cnn3")
def cifar_cnn3(num_classes=10, in_channels=3, image_size=32):
    """Convs 3-8-16-32 with ReLU and He init, two pools, linear 2048-256-10."""
    return CifarCNN3(num_classes, in_channels, image_size)
