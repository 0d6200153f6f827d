"""Differentiable tensor ops, each a `Function` with forward and backward side by side."""
from .elementwise import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .selection import *  # noqa: F401,F403
from .extra import *  # noqa: F401,F403
