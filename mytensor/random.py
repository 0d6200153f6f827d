"""`mytensor.Generator`: a random stream of one's own, for `random_split`, samplers and loaders.

    g = mytensor.Generator().manual_seed(42)
    train, val = random_split(dataset, [0.9, 0.1], generator=g)

Tensor creation (`randn`, ...) draws from the backends' default generators, which
`mytensor.manual_seed` seeds; a Generator is for the data pipeline's own draws.
"""
import numpy as np


class Generator:
    def __init__(self, device="cpu"):
        self.device = device
        self.manual_seed(np.random.SeedSequence().entropy % 2**63)

    def manual_seed(self, seed):
        self._seed = int(seed)
        self.rng = np.random.default_rng(self._seed)
        return self

    def seed(self):
        """Reseed from fresh entropy; returns the new seed."""
        self.manual_seed(np.random.SeedSequence().entropy % 2**63)
        return self._seed

    def initial_seed(self):
        return self._seed


def default_rng(generator=None):
    """The NumPy generator behind `generator`, or the CPU backend's (seeded by `mytensor.manual_seed`)."""
    if generator is not None:
        return generator.rng
    from .backend import get_backend
    return get_backend("cpu").rng
