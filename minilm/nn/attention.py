"""Multi-head attention (Vaswani et al. 2017, section 3.2.2), batch-first.

    head_i = Attention(x W_q^i, x W_k^i, x W_v^i)
    MultiHead(x) = Concat(head_1, ..., head_h) W_o

The h heads are computed at once by projecting to (B, T, C) and reshaping to
(B, h, T, C/h). The projections are either one fused matrix (`in_proj_weight`
(3C, C), the layout of torch.nn.MultiheadAttention, so PyTorch weights load
unchanged) or three separate Linear layers (`q_proj`, `k_proj`, `v_proj`).
"""
import numpy as np

from minilm.nn import functional as F
from minilm.nn.layers import Linear, _uniform
from minilm.nn.module import Module, Parameter
from minilm.backend import array_module
from minilm.random import default_generator
from minilm.tensor import Tensor
from minilm.tensor_functions import cat


class KVCache:
    """Keys and values of the tokens seen so far, for one attention layer.

    During generation each new token only needs its own query; its keys and
    values are appended here, so every step costs O(T) instead of O(T^2).
    Arrays are preallocated to `max_len` and filled left to right.
    """

    def __init__(self):
        self.k = self.v = None
        self.length = 0

    def append(self, k, v, max_len):
        """Store k, v of shape (B, H, t, D); return all keys/values so far, (B, H, length, D)."""
        b, h, t, d = k.shape
        if self.k is None:
            xp = array_module(k)
            self.k = xp.zeros((b, h, max_len, d), dtype=k.dtype)
            self.v = xp.zeros((b, h, max_len, v.shape[-1]), dtype=v.dtype)
        if self.length + t > self.k.shape[2]:
            raise ValueError(f"KVCache: {self.length} cached + {t} new tokens exceed the cache "
                             f"size {self.k.shape[2]} (the model's context length)")
        self.k[:, :, self.length:self.length + t] = k
        self.v[:, :, self.length:self.length + t] = v
        self.length += t
        return self.k[:, :, :self.length], self.v[:, :, :self.length]

    def extend(self, k, v, max_len):
        """Append this call's k, v Tensors (B, H, t, D); return all keys/values as Tensors.

        Earlier tokens' keys and values are constants; this call's own k, v keep
        their gradient by being concatenated after them.
        """
        past = self.length
        self.append(k.data, v.data, max_len)
        if not past:
            return k, v
        k_all = cat([Tensor._make(self.k[:, :, :past]), k], axis=2)             # (B, nh, past + t, hs)
        v_all = cat([Tensor._make(self.v[:, :, :past]), v], axis=2)
        return k_all, v_all


class MultiHeadAttention(Module):
    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, causal=False,
                 fused_qkv=True, generator=None):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"MultiHeadAttention: embed_dim={embed_dim} is not divisible by "
                             f"num_heads={num_heads}")
        gen = generator if generator is not None else default_generator()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.causal, self.fused_qkv, self.dropout_p = causal, fused_qkv, dropout
        self.generator = generator
        if fused_qkv:
            # torch.nn.MultiheadAttention initialises in_proj with Xavier-uniform and zero bias
            bound = np.sqrt(6.0 / (embed_dim + 3 * embed_dim))
            self.in_proj_weight = Parameter(_uniform(gen, (3 * embed_dim, embed_dim), bound))
            self.in_proj_bias = Parameter(np.zeros(3 * embed_dim, np.float32)) if bias else None
        else:
            self.q_proj = Linear(embed_dim, embed_dim, bias, gen)
            self.k_proj = Linear(embed_dim, embed_dim, bias, gen)
            self.v_proj = Linear(embed_dim, embed_dim, bias, gen)
        self.out_proj = Linear(embed_dim, embed_dim, bias, gen)

    def _project_qkv(self, x):
        if self.fused_qkv:
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)             # (B, T, C) -> (B, T, 3C)
            return qkv.split(self.embed_dim, axis=-1)                             # 3 x (B, T, C)
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def _heads(self, t):
        b, n, _ = t.shape
        return t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)    # (B, T, C) -> (B, nh, T, hs)

    def forward(self, x, attention_mask=None, attn_mask=None, need_weights=False, kv_cache=None,
                max_len=None):
        """x: (B, T, C).

        attention_mask: (B, T_keys) with 1/True for real tokens and 0/False for
            padding (the tokenizer's convention); padded keys are never attended.
        attn_mask: an extra boolean mask broadcastable to (B, nh, Tq, Tk),
            True = may attend.
        need_weights: also return the attention probabilities (B, nh, Tq, Tk).
        kv_cache: a KVCache to append this call's keys and values to (generation).
        """
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiHeadAttention: expected input (B, T, {self.embed_dim}), got {x.shape}")
        b, t, c = x.shape
        q, k, v = (self._heads(z) for z in self._project_qkv(x))                  # (B, nh, T, hs) each
        if kv_cache is not None:
            k, v = kv_cache.extend(k, v, max_len or t)                           # (B, nh, past + T, hs)
        mask = None
        if attention_mask is not None:
            keys = np.asarray(attention_mask.numpy() if hasattr(attention_mask, "numpy") else attention_mask)
            if keys.shape != (b, k.shape[2]):
                raise ValueError(f"MultiHeadAttention: attention_mask of shape {keys.shape} must be "
                                 f"(batch, keys) = {(b, k.shape[2])}")
            mask = keys.astype(bool)[:, None, None, :]                            # (B, 1, 1, Tk)
            if type(x.data).__module__.startswith("cupy"):
                mask = array_module(x.data).asarray(mask)
        if attn_mask is not None:
            mask = attn_mask if mask is None else (mask & attn_mask)
        result = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal,
                                                dropout_p=self.dropout_p, training=self.training,
                                                return_weights=need_weights, generator=self.generator)
        y, weights = result if need_weights else (result, None)
        y = y.transpose(1, 2).reshape(b, t, c)                                    # (B, nh, T, hs) -> (B, T, C)
        y = self.out_proj(y)
        return (y, weights) if need_weights else y

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, causal={self.causal}, "
                f"fused_qkv={self.fused_qkv}")
