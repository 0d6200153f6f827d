"""Neural-network building blocks: `Module`, layers, losses, `init` and `functional`.

    import mytensor.nn as nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
"""
from . import functional  # noqa: F401
from . import init  # noqa: F401
from . import parallel  # noqa: F401
from . import utils  # noqa: F401
from .parameter import Parameter  # noqa: F401
from .modules import *  # noqa: F401,F403
from .parallel import DataParallel  # noqa: F401
from .. import unsupported as _unsupported  # noqa: E402

__getattr__ = _unsupported.module_getattr("torch.nn", __name__)
