"""Mixed precision, as in `torch.amp`: `autocast` regions run each op in the precision
that suits it, and `GradScaler` keeps float16 gradients from underflowing."""
from .autocast_mode import autocast, get_autocast_dtype, is_autocast_enabled  # noqa: F401
from .grad_scaler import GradScaler  # noqa: F401
