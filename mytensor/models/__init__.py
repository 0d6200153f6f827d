"""Ready-made networks, built by name:

    model = mytensor.models.get_model("lenet5", num_classes=10, in_channels=1, image_size=28)

`available_models()` lists the names. Each builder adapts its input layer to
the image shape (channels and side length) and its output to num_classes.
"""
from .registry import available_models, get_model, register_model  # noqa: F401
from .mlp import MLP  # noqa: F401
from .lenet import CifarLeNet, LeNet5  # noqa: F401
from .cnn import CifarCNN3, SimpleConv  # noqa: F401
from .resnet import BasicBlock, ResNet, ResNet9  # noqa: F401
from .airbench import Airbench94  # noqa: F401
