"""`mytensor.nn.functional`: the stateless functions layers are built from, with
PyTorch's names and argument order.

    import mytensor.nn.functional as F
    y = F.relu(F.conv2d(x, weight, bias, padding=1))
    loss = F.cross_entropy(F.linear(y.flatten(1), w2), target)

Each hot path is a `Function` whose forward and backward call the device's
kernels (`ctx.backend.im2col`, `max_pool2d`, `batch_norm_train`,
`softmax_cross_entropy`, ...) and otherwise only generic array math (`ctx.xp`),
so the same code runs on NumPy and on CuPy, with no host-device synchronisation.

Modules: `linear`, `conv` (conv2d by im2col + GEMM), `pooling`, `normalization`
(batch_norm, layer_norm), `dropout`, `activation`, `loss`, `padding`, `embedding`,
`attention` (scaled_dot_product_attention).
"""
from ...ops.indexing import one_hot
from .activation import elu, gelu, leaky_relu, log_softmax, logsigmoid, relu, sigmoid, silu, softmax, softplus, tanh
from .attention import scaled_dot_product_attention
from .conv import conv1d, conv2d, conv_transpose2d
from .dropout import dropout, dropout2d
from .embedding import embedding
from .extra import cosine_similarity, huber_loss, interpolate, l1_loss, normalize, smooth_l1_loss  # noqa: F401
from .linear import linear
from .loss import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, mse_loss,
                   nll_loss)
from .normalization import batch_norm, batch_norm_gelu, batch_norm_relu, group_norm, layer_norm
from .padding import pad
from .pooling import adaptive_avg_pool2d, avg_pool1d, avg_pool2d, max_pool1d, max_pool2d

__all__ = ["linear", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "dropout",
           "relu", "leaky_relu", "gelu", "silu", "sigmoid", "tanh", "softmax", "log_softmax",
           "cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "pad", "one_hot", "layer_norm", "embedding", "scaled_dot_product_attention", "dropout2d", "softplus",
           "elu", "logsigmoid", "l1_loss", "smooth_l1_loss", "huber_loss", "normalize", "cosine_similarity",
           "interpolate", "conv_transpose2d", "conv1d", "group_norm", "max_pool1d", "avg_pool1d"]

from ... import unsupported as _unsupported  # noqa: E402
from ...tensor import Tensor as _Tensor  # noqa: E402

__getattr__ = _unsupported.module_getattr("torch.nn.functional", __name__)


# `x.softmax(dim)`, `x.log_softmax(dim)`: methods of Tensor that this layer, which defines
# them, attaches (the tensor below knows nothing of nn)
_Tensor.softmax = lambda self, dim, dtype=None: softmax(self if dtype is None else self.to(dtype), dim)
_Tensor.log_softmax = lambda self, dim, dtype=None: log_softmax(self if dtype is None else self.to(dtype), dim)
