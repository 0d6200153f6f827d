"""Optimizers (`SGD`, `Adam`, `AdamW`, `RMSprop`, `Adagrad`, `Adadelta`, `Muon`), several stepped as one
(`CombinedOptimizer`), learning-rate schedules (`lr_scheduler`) and `Lookahead`'s slow weights."""
from .optimizer import Optimizer  # noqa: F401
from .sgd import SGD  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .adaptive import Adadelta, Adagrad, RMSprop  # noqa: F401
from .muon import Muon  # noqa: F401
from .combined import CombinedOptimizer  # noqa: F401
from .lookahead import Lookahead  # noqa: F401
from . import lr_scheduler  # noqa: F401
from .. import unsupported as _unsupported

__getattr__ = _unsupported.module_getattr("torch.optim", __name__)
