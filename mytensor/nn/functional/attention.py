"""`scaled_dot_product_attention`: softmax(q k^T * scale + mask) v, as PyTorch's function.

Composed from differentiable ops (matmul, masked_fill, softmax, dropout), so its
gradient is theirs; the causal mask is built on the device, nothing is read back.
A query whose every key is masked gets zero weights (PyTorch's convention), not nan."""
import math

from ...creation import ones
from ...ops import amax, masked_fill, matmul, tril, where
from .activation import softmax
from .dropout import dropout


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev).
    attn_mask: bool (True = may attend) or float (added to the scores), broadcast to (..., L, S)."""
    if enable_gqa:
        raise NotImplementedError("torch.nn.functional.scaled_dot_product_attention(enable_gqa=True): repeat the "
                                  "key/value heads to the query's count first")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention(): give attn_mask or is_causal, not both")
    L, S = query.shape[-2], key.shape[-2]
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = matmul(query, key.transpose(-2, -1)) * scale
    if is_causal:
        attn_mask = tril(ones(L, S, dtype=bool, device=query.device))
    if attn_mask is not None:
        if attn_mask.dtype.name == "bool":
            scores = masked_fill(scores, ~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    if attn_mask is not None:
        # a query that may attend to nothing gets zero weights, as PyTorch's (not 0/0 = nan)
        blocked = amax(scores, -1, keepdim=True) == float("-inf")
        weights = where(blocked, 0.0, softmax(where(blocked, 0.0, scores), -1))
    else:
        weights = softmax(scores, -1)
    if dropout_p > 0:
        weights = dropout(weights, dropout_p)
    return matmul(weights, value)
