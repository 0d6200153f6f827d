"""A multilayer perceptron: the image flattened into a vector, then fully connected layers."""
from .. import nn
from .registry import register_model


class MLP(nn.Sequential):
    """Flatten -> Linear -> ReLU -> ... -> Linear (784-512-256-10 for MNIST).
    A Sequential, so its parameters are named like PyTorch's nn.Sequential
    of the same layers ("1.weight", "3.weight", ...)."""

    def __init__(self, in_features=784, hidden=(512, 256), num_classes=10):
        layers = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        super().__init__(*layers)


@register_model("mlp")
def mlp(num_classes=10, in_channels=1, image_size=28):
    """Two hidden layers (512, 256) with ReLU on the flattened image."""
    return MLP(in_channels * image_size * image_size, (512, 256), num_classes)
