"""`mytensor.vision`: torchvision's `datasets`, `transforms` and `utils`, for ported programs.

    from mytensor.vision import datasets, transforms     # was: from torchvision import ...

`transforms` here work sample by sample on PIL images and (C, H, W) Tensors, as
torchvision's do; `mytensor.data.transforms` are the faster whole-batch versions the
`mytensor` command uses.
"""
from . import datasets, transforms, utils  # noqa: F401
