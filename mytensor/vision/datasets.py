"""`torchvision.datasets` names: the datasets of `mytensor.data`, which take `transform=` and
`target_transform=` as torchvision's do (a transform then gets a PIL image).

    train = datasets.MNIST("data", train=True, download=True, transform=transforms.ToTensor())

Differences: without a transform a sample's image is a float32 (C, H, W) array in [0, 1]
(not a PIL image), and `download=True` is the default.
"""
from .. import unsupported
from ..data.cifar import CIFAR10  # noqa: F401
from ..data.image_folder import ImageFolder  # noqa: F401
from ..data.mnist import MNIST, FashionMNIST  # noqa: F401
from ..data.tiny_imagenet import TinyImageNet  # noqa: F401

__getattr__ = unsupported.module_getattr("torchvision.datasets", __name__)
