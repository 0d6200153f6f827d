"""Batch normalisation: normalise each channel by its batch mean and variance.

In training the batch statistics are used, and running averages of them are
kept in buffers; in eval mode those running averages are used instead, so a
prediction does not depend on the rest of the batch.
"""
import functools

from ... import dtypes
from ...autograd.graph import increment_version
from ...creation import ones, tensor, zeros
from .. import functional as F
from .. import init
from ..parameter import Parameter
from .activation import GELU
from .module import Module


class _BatchNorm(Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(ones(num_features, device=device, dtype=dtype))
            if bias:
                self.bias = Parameter(zeros(num_features, device=device, dtype=dtype))
            else:  # a learned scale without a shift (PyTorch 2.13's `bias=False`)
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, device=device, dtype=dtype))
            self.register_buffer("running_var", ones(num_features, device=device, dtype=dtype))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=dtypes.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            self.num_batches_tracked._data.fill(0)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _check_input_dim(self, input):
        raise NotImplementedError

    def forward(self, input):
        return self._normalize(input, F.batch_norm)

    def forward_activated(self, input, activation):
        """activation(self(input)) for an nn.ReLU or nn.GELU `activation`, fused into the batch norm's
        passes (what nn.Sequential runs for a BatchNorm then one of them)."""
        if isinstance(activation, GELU):
            return self._normalize(input, functools.partial(F.batch_norm_gelu, approximate=activation.approximate))
        return self._normalize(input, F.batch_norm_relu)

    def _normalize(self, input, batch_norm):
        self._check_input_dim(input)
        if input.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) got an input with {input.shape[1]} "
                             f"channels (shape {tuple(input.shape)})")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked._data += 1  # counted on the device: no sync
            increment_version(self.num_batches_tracked)
            if self.momentum is None:  # a cumulative average: needs the count on the host
                factor = 1.0 / float(self.num_batches_tracked.item())
        # batch statistics while training, or when there are no running ones to use
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return batch_norm(input, self.running_mean if track else None, self.running_var if track else None,
                          self.weight, self.bias, use_batch_stats, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """For (N, C) or (N, C, L) inputs: statistics per feature C."""

    def _check_input_dim(self, input):
        if input.dim() not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")


class BatchNorm2d(_BatchNorm):
    """For (N, C, H, W) inputs: statistics per channel C over N, H and W."""

    def _check_input_dim(self, input):
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")
