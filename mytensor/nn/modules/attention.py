"""`MultiheadAttention`: PyTorch's layer, with its parameter names (in_proj_weight, in_proj_bias,
out_proj) so state dicts carry over, composed from linear, matmul, masked softmax and dropout."""
import math

from ... import ops
from ...creation import empty, ones, zeros
from .. import functional as F
from .. import init
from ..parameter import Parameter
from .linear import Linear
from .module import Module


class MultiheadAttention(Module):
    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        if add_bias_kv or add_zero_attn or (kdim not in (None, embed_dim)) or (vdim not in (None, embed_dim)):
            raise NotImplementedError("torch.nn.MultiheadAttention with add_bias_kv, add_zero_attn or kdim/vdim "
                                      "different from embed_dim is not supported")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = embed_dim, num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, device=device, dtype=dtype))
        if bias:
            self.in_proj_bias = Parameter(zeros(3 * embed_dim, device=device, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            init.constant_(self.out_proj.bias, 0.0)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        """query (L, N, E) (or (N, L, E) with batch_first, or unbatched (L, E)); masks: bool True (or
        -inf) where attention is not allowed, as in PyTorch. Returns (output, weights or None)."""
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        L, N, E = query.shape
        S, H, d = key.shape[0], self.num_heads, self.head_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        wq, wk, wv = w.chunk(3)
        bq, bk, bv = b.chunk(3) if b is not None else (None, None, None)

        def heads(x, weight, bias, n):  # (n, N, E) -> (N, H, n, d)
            return F.linear(x, weight, bias).reshape(n, N, H, d).permute(1, 2, 0, 3)
        q, k, v = heads(query, wq, bq, L), heads(key, wk, bk, S), heads(value, wv, bv, S)
        scores = ops.matmul(q, k.transpose(-2, -1)) * (1 / math.sqrt(d))  # (N, H, L, S)
        if is_causal and attn_mask is None:
            attn_mask = ops.triu(ones(L, S, dtype=bool, device=query.device), 1)  # True: a later position
        if attn_mask is not None:
            mask = attn_mask.reshape(N, H, L, S) if attn_mask.ndim == 3 else attn_mask
            scores = ops.masked_fill(scores, mask, float("-inf")) if mask.dtype.name == "bool" else scores + mask
        if key_padding_mask is not None:
            pad = key_padding_mask.reshape(N, 1, 1, S)
            scores = ops.masked_fill(scores, pad, float("-inf")) if pad.dtype.name == "bool" else scores + pad
        weights = F.softmax(scores, -1)
        attended = F.dropout(weights, self.dropout, self.training) if self.dropout > 0 else weights
        out = ops.matmul(attended, v).permute(2, 0, 1, 3).reshape(L, N, E)
        out = self.out_proj(out)
        if unbatched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        weights = weights.mean(1) if average_attn_weights else weights
        return out, (weights.squeeze(0) if unbatched else weights)
