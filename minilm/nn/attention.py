"""Multi-head attention (Vaswani et al. 2017, section 3.2.2), batch-first: the one attention module
that the seed's TransformerModel, GPT and BERT all use.

    head_i = Attention(x W_q^i, x W_k^i, x W_v^i)
    MultiHead(x) = Concat(head_1, ..., head_h) W_o

The h heads are computed at once: one Linear `in_proj` projects x to q, k and
v together, (B, T, C) -> (B, T, 3C), each is reshaped to (B, h, T, C/h), and
`out_proj` mixes the concatenated heads. (Checkpoints that store separate
query/key/value matrices, like BERT's, or GPT-2's transposed `c_attn`, are
mapped onto in_proj when they are loaded: see minilm/models/hf.py.)

Cross-attention ("encoder-decoder attention", Vaswani et al. 2017, section
3.2.3) is the same module called with `memory`: the queries come from the
decoder's x, the keys and values from the encoder's output,

    q = x W_q,   k = memory W_k,   v = memory W_v,

using the row blocks of the one fused in_proj (W_q = rows [0:C], W_k and W_v =
rows [C:3C]), so there is no second attention implementation. It is never
causal (every output position may look at the whole source); its mask says
which memory positions are real (a key-padding mask, (B, 1, 1, S)).
"""
import numpy as np

from minilm.nn import functional as F
from minilm.nn.layers import Linear
from minilm.nn.module import Module
from minilm.backend import array_module
from minilm.tensor import Tensor
from minilm.tensor_functions import cat


class KVCache:
    """Keys and values of the tokens seen so far, for one attention layer.

    During generation each new token only needs its own query; its keys and
    values are appended here, so every step costs O(T) instead of O(T^2).
    Arrays are preallocated to `max_len` (the model's context length) and
    filled left to right.
    """

    def __init__(self, max_len):
        self.max_len = int(max_len)
        self.k = self.v = None
        self.length = 0

    def append(self, k, v):
        """Store k, v of shape (B, H, t, D); return all keys/values so far, (B, H, length, D)."""
        b, h, t, d = k.shape
        if self.k is None:
            xp = array_module(k)
            self.k = xp.zeros((b, h, self.max_len, d), dtype=k.dtype)
            self.v = xp.zeros((b, h, self.max_len, v.shape[-1]), dtype=v.dtype)
        if self.length + t > self.max_len:
            raise ValueError(f"KVCache: {self.length} cached + {t} new tokens exceed the cache "
                             f"size {self.max_len} (the model's context length)")
        self.k[:, :, self.length:self.length + t] = k
        self.v[:, :, self.length:self.length + t] = v
        self.length += t
        return self.k[:, :, :self.length], self.v[:, :, :self.length]

    def extend(self, k, v):
        """Append this call's k, v Tensors (B, H, t, D); return all keys/values as Tensors.

        Earlier tokens' keys and values are constants; this call's own k, v keep
        their gradient by being concatenated after them.
        """
        past = self.length
        k_all, v_all = self.append(k.data, v.data)
        if not past:
            return k, v
        if not (k.requires_grad or v.requires_grad):                            # generation: no graph,
            return Tensor._make(k_all), Tensor._make(v_all)                     # so no copy either
        k_all = cat([Tensor._make(self.k[:, :, :past]), k], axis=2)             # (B, nh, past + t, hs)
        v_all = cat([Tensor._make(self.v[:, :, :past]), v], axis=2)
        return k_all, v_all


class MultiHeadAttention(Module):
    """MultiHeadAttention(embed_dim, num_heads, dropout=0.0, bias=True, causal=False, generator=None).

    dropout: on the attention probabilities (while training). causal: each
    position attends only to itself and the positions before it (GPT).
    Initialised like torch.nn.MultiheadAttention: in_proj Xavier-uniform,
    out_proj like a Linear, biases zero (models re-initialise as they need).
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, causal=False, generator=None):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"MultiHeadAttention: embed_dim={embed_dim} is not divisible by "
                             f"num_heads={num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.causal, self.dropout_p, self.generator = causal, dropout, generator
        self.in_proj = Linear(embed_dim, 3 * embed_dim, bias, generator)
        self.out_proj = Linear(embed_dim, embed_dim, bias, generator)
        # Linear drew in_proj ~ U(-1/sqrt(C), 1/sqrt(C)); stretch it to torch's Xavier-uniform
        # bound sqrt(6 / (fan_in + fan_out)) = sqrt(6 / (C + 3C)).
        bound = np.sqrt(6.0 / (embed_dim + 3 * embed_dim))
        self.in_proj.weight.data[...] = self.in_proj.weight.data * (bound * np.sqrt(embed_dim))
        for linear in (self.in_proj, self.out_proj):
            if linear.bias is not None:
                linear.bias.data[...] = 0.0

    def forward(self, x, mask=None, kv_cache=None, need_weights=False, *, memory=None):
        """x: (B, T, C) -> (B, T, C); with need_weights also the probabilities (B, nh, Tq, Tk).

        mask: boolean, broadcastable to (B, nh, Tq, Tk), True = may attend
            (build it with minilm.nn.masks; the causal rule is added when causal=True).
        kv_cache: a KVCache; this call's keys and values are appended to it and
            the queries attend to everything it holds (generation).
        memory: (B, S, C), for cross-attention: keys and values come from memory,
            queries from x, and the causal rule is not applied (Tk = S). mask is
            then over memory positions, usually masks.padding_mask(...) (B, 1, 1, S).
        """
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiHeadAttention: expected input (B, T, {self.embed_dim}), got {x.shape}")
        if memory is not None:
            return self._cross_attention(x, memory, mask, kv_cache, need_weights)
        b, t, c = x.shape
        q, k, v = self.in_proj(x).split(c, axis=-1)                              # (B, T, 3C) -> 3 x (B, T, C)
        q, k, v = (z.reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)
                   for z in (q, k, v))                                           # (B, T, C) -> (B, nh, T, hs)
        if kv_cache is not None:
            k, v = kv_cache.extend(k, v)                                         # (B, nh, past + T, hs)
        return self._attend(q, k, v, mask, self.causal, need_weights, b, t, c)

    def _cross_attention(self, x, memory, mask, kv_cache, need_weights):
        """Queries from x (B, T, C), keys and values from memory (B, S, C), via in_proj's row blocks."""
        b, t, c = x.shape
        if memory.ndim != 3 or memory.shape[0] != b or memory.shape[-1] != c:
            raise ValueError(f"MultiHeadAttention: memory must have shape (B, S, C) = ({b}, S, {c}) for "
                             f"queries of shape {x.shape}, got {memory.shape}")
        if kv_cache is not None:
            raise ValueError("MultiHeadAttention: kv_cache is for self-attention; with memory the keys "
                             "and values are the memory's, computed in full on every call")
        s = memory.shape[1]
        w, bias = self.in_proj.weight, self.in_proj.bias                        # (3C, C), (3C,)
        q = F.linear(x, w[:c], None if bias is None else bias[:c])               # (B, T, C)
        k, v = F.linear(memory, w[c:], None if bias is None else bias[c:]).split(c, axis=-1)  # 2 x (B, S, C)
        q = q.reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)       # (B, nh, T, hs)
        k, v = (z.reshape(b, s, self.num_heads, self.head_dim).transpose(1, 2)
                for z in (k, v))                                                 # (B, nh, S, hs)
        return self._attend(q, k, v, mask, False, need_weights, b, t, c)         # never causal

    def _attend(self, q, k, v, mask, causal, need_weights, b, t, c):
        result = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                dropout_p=self.dropout_p, training=self.training,
                                                return_weights=need_weights, generator=self.generator)
        y, weights = result if need_weights else (result, None)
        y = self.out_proj(y.transpose(1, 2).reshape(b, t, c))                    # (B, nh, T, hs) -> (B, T, C)
        return (y, weights) if need_weights else y

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, causal={self.causal}"
