"""Training loop, checkpoints and plots: what the `mytensor` command is built from."""
from .checkpoint import load_checkpoint, save_checkpoint  # noqa: F401
from .loop import evaluate, train_one_epoch  # noqa: F401
