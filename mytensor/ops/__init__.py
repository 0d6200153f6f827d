"""Differentiable tensor ops, each a `Function` with forward and backward side by side."""
from .elementwise import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .selection import *  # noqa: F401,F403
from .extra import *  # noqa: F401,F403

from . import activation, elementwise, extra, indexing, linalg, reduction, selection, shape  # noqa: E402

# `from .ops import *` (in mytensor/__init__) takes the ops, not these module names
__all__ = [name for m in (elementwise, activation, reduction, shape, indexing, linalg, selection, extra)
           for name in m.__all__]
