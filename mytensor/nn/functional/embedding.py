"""`embedding`: rows of a weight table picked by integer indices (a token's vector).

Backward adds each output row's gradient into the row it was read from (an index may
repeat), one scatter-add on the device; the `padding_idx` row gets no gradient."""
from ... import dtypes
from ...autograd.function import Function
from .util import check_float, check_tensor


class Embedding(Function):
    @staticmethod
    def forward(ctx, weight, indices, padding_idx):
        ctx.args = (weight.shape, padding_idx)
        ctx.save_for_backward(indices)
        return ctx.xp.take(weight, indices, axis=0)

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved
        shape, padding_idx = ctx.args
        xp = ctx.xp
        g = xp.zeros(shape, dtype=grad.dtype)
        xp.add.at(g, indices.reshape(-1), grad.reshape(-1, shape[1]))
        if padding_idx is not None:
            g[padding_idx] = 0
        return g, None, None


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """weight[input]: (..., ) int64 indices into a (num_embeddings, dim) table -> (..., dim)."""
    check_tensor(input, "input", "embedding")
    check_float(weight, "weight", "embedding")
    if input.dtype not in (dtypes.int64, dtypes.int32):
        raise TypeError(f"embedding(): indices must be an integer tensor (int64 or int32), got {input.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding(): weight must be 2-D (num_embeddings, embedding_dim), got shape "
                         f"{tuple(weight.shape)}")
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError("torch.nn.functional.embedding with max_norm, scale_grad_by_freq or sparse is "
                                  "not supported")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += weight.shape[0]
    if input._backend is not weight._backend:
        raise RuntimeError(f"embedding(): indices are on {input.device} but weight is on {weight.device}")
    return Embedding.apply(weight, input._data, padding_idx)
