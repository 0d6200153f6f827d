"""`Dropout`: a regulariser that zeroes random activations while training."""
from .. import functional as F
from .module import Module


class Dropout(Module):
    """In training, zero each element with probability p and scale the rest
    by 1/(1-p) (so the expected value is unchanged); in eval, do nothing."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout2d(Dropout):
    """Zero whole channels (feature maps) with probability p in training."""

    def forward(self, input):
        return F.dropout2d(input, self.p, self.training)
