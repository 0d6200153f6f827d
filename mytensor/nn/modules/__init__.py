"""The layers, one small file per family."""
from .module import Module  # noqa: F401
from .linear import Identity, Linear  # noqa: F401
from .conv import Conv1d, Conv2d, ConvTranspose2d  # noqa: F401
from .whitening import PatchWhitening  # noqa: F401
from .pooling import AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d  # noqa: F401
from .batchnorm import BatchNorm1d, BatchNorm2d  # noqa: F401
from .dropout import Dropout, Dropout2d  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .normalization import GroupNorm, LayerNorm  # noqa: F401
from .attention import MultiheadAttention  # noqa: F401
from .extra import HuberLoss, L1Loss, SmoothL1Loss, Unflatten, Upsample  # noqa: F401
from .activation import ELU, GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Softplus, Tanh  # noqa: F401
from .flatten import Flatten  # noqa: F401
from .container import ModuleDict, ModuleList, Sequential  # noqa: F401
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss  # noqa: F401

__all__ = ["Module", "Identity", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm1d",
           "BatchNorm2d", "Dropout", "Dropout2d", "Embedding", "LayerNorm", "ReLU", "LeakyReLU", "GELU", "SiLU",
           "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
           "Flatten", "Sequential", "ModuleList", "ModuleDict", "CrossEntropyLoss", "NLLLoss", "MSELoss", "BCELoss",
           "BCEWithLogitsLoss", "ELU", "HuberLoss", "L1Loss", "SmoothL1Loss", "Softplus", "Unflatten", "Upsample",
           "ConvTranspose2d", "Conv1d", "MaxPool1d", "AvgPool1d", "GroupNorm",
           "MultiheadAttention", "PatchWhitening"]
