"""The Transformer block: attention and a feed-forward network, each wrapped in a
residual connection and a LayerNorm.

Post-LN (the original Transformer, BERT, and the seed's nn.TransformerEncoderLayer):
    x = norm1(x + dropout1(attn(x)))
    x = norm2(x + dropout2(ff(x)))
Pre-LN (GPT-2 and most later models; trains stably without warm-up tricks):
    x = x + dropout1(attn(norm1(x)))
    x = x + dropout2(ff(norm2(x)))

Attribute names follow torch.nn.TransformerEncoderLayer (self_attn, linear1,
linear2, norm1, norm2, norm_first), so its weights load by name.
"""
from minilm.nn import functional as F
from minilm.nn.attention import MultiHeadAttention
from minilm.nn.layers import Dropout, LayerNorm, Linear
from minilm.nn.module import Module

_ACTIVATIONS = {
    "relu": F.relu,
    "gelu": lambda x: F.gelu(x, "none"),
    "gelu_tanh": lambda x: F.gelu(x, "tanh"),
}


def activation_fn(name):
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class FeedForward(Module):
    """Position-wise feed-forward network: linear2(dropout(act(linear1(x)))), (B, T, C) -> (B, T, C).

    The same two-layer MLP is applied to every position independently
    (Vaswani et al. 2017, section 3.3); the hidden width is usually 4C.
    """

    def __init__(self, d_model, dim_feedforward, dropout=0.0, activation="gelu", bias=True, generator=None):
        super().__init__()
        self.linear1 = Linear(d_model, dim_feedforward, bias, generator)
        self.linear2 = Linear(dim_feedforward, d_model, bias, generator)
        self.dropout = Dropout(dropout, generator)
        self.activation = activation
        self._act = activation_fn(activation)

    def forward(self, x):
        return self.linear2(self.dropout(self._act(self.linear1(x))))          # (B, T, C) -> (B, T, 4C) -> (B, T, C)

    def extra_repr(self):
        return f"activation={self.activation!r}"


class TransformerBlock(Module):
    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 norm_first=False, causal=False, layer_norm_eps=1e-5, bias=True, generator=None):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout, bias=bias, causal=causal,
                                            generator=generator)
        self.linear1 = Linear(d_model, dim_feedforward, bias, generator)
        self.dropout = Dropout(dropout, generator)
        self.linear2 = Linear(dim_feedforward, d_model, bias, generator)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = Dropout(dropout, generator)
        self.dropout2 = Dropout(dropout, generator)
        self.activation = activation
        self._act = activation_fn(activation)

    def _ff(self, x):
        return self.linear2(self.dropout(self._act(self.linear1(x))))

    def forward(self, x, attention_mask=None, attn_mask=None, kv_cache=None, max_len=None):
        """x: (B, T, C). Masks as in MultiHeadAttention (True / 1 = may attend / real token)."""
        attn = lambda h: self.self_attn(h, attention_mask=attention_mask, attn_mask=attn_mask,
                                        kv_cache=kv_cache, max_len=max_len)
        if self.norm_first:
            x = x + self.dropout1(attn(self.norm1(x)))
            x = x + self.dropout2(self._ff(self.norm2(x)))
        else:
            x = self.norm1(x + self.dropout1(attn(x)))
            x = self.norm2(x + self.dropout2(self._ff(x)))
        return x

    def extra_repr(self):
        return f"norm_first={self.norm_first}, activation={self.activation!r}"
