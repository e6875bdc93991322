"""The Transformer block, the one block the seed's TransformerModel, GPT and BERT are stacks of.

Attention and a position-wise feed-forward network, each wrapped in a
residual connection and a LayerNorm. Where the LayerNorm sits is the one
design choice that differs between the models:

Post-LN (the original Transformer, BERT, the seed's nn.TransformerEncoderLayer):
    x = norm1(x + dropout1(attn(x)))
    x = norm2(x + dropout2(ff(x)))
Pre-LN (GPT-2 and most later models; trains stably without warm-up tricks):
    x = x + dropout1(attn(norm1(x)))
    x = x + dropout2(ff(norm2(x)))

Names follow torch.nn.TransformerEncoderLayer (self_attn, norm1, norm2,
dropout1, dropout2, norm_first) with the feed-forward's two layers in `ff`.

TransformerDecoderBlock is the decoder half of the original encoder-decoder
Transformer (Vaswani et al. 2017, section 3.1): between the causal
self-attention and the feed-forward sits a third sub-layer, cross-attention
over the encoder's output `memory` (section 3.2.3), with its own residual
and LayerNorm. Names follow torch.nn.TransformerDecoderLayer (self_attn,
multihead_attn, norm1..3, dropout1..3, norm_first).
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


class FeedForward(Module):
    """Position-wise feed-forward network: linear2(dropout(act(linear1(x)))), (B, T, C) -> (B, T, C).

    The same two-layer MLP is applied to every position independently
    (Vaswani et al. 2017, section 3.3); the hidden width is usually 4C.
    activation: "relu" (the seed), "gelu" (BERT, exact erf) or "gelu_tanh" (GPT-2).
    dropout: between the activation and linear2 (the seed has it; GPT-2 and BERT do not).
    """

    def __init__(self, d_model, dim_feedforward, dropout=0.0, activation="gelu", bias=True, generator=None):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"FeedForward: unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}")
        self.linear1 = Linear(d_model, dim_feedforward, bias, generator)
        self.linear2 = Linear(dim_feedforward, d_model, bias, generator)
        self.dropout = Dropout(dropout, generator)
        self.activation = activation

    def forward(self, x):
        h = _ACTIVATIONS[self.activation](self.linear1(x))                       # (B, T, C) -> (B, T, 4C)
        return self.linear2(self.dropout(h))                                     # (B, T, 4C) -> (B, T, C)

    def extra_repr(self):
        return f"activation={self.activation!r}"


class TransformerBlock(Module):
    """TransformerBlock(d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
    norm_first=False, causal=False, layer_norm_eps=1e-5, bias=True, attn_dropout=None,
    ff_dropout=None, generator=None).

    dropout: on each residual branch (dropout1, dropout2). attn_dropout: on the
    attention probabilities, ff_dropout: inside the feed-forward; both default
    to `dropout` (the seed's layer uses one rate everywhere; GPT-2 and BERT set
    ff_dropout=0). bias=False drops the biases of the linears and LayerNorms.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 norm_first=False, causal=False, layer_norm_eps=1e-5, bias=True, attn_dropout=None,
                 ff_dropout=None, generator=None):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout if attn_dropout is None else attn_dropout,
                                            bias=bias, causal=causal, generator=generator)
        self.ff = FeedForward(d_model, dim_feedforward, dropout if ff_dropout is None else ff_dropout,
                              activation, bias, generator)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout, generator)
        self.dropout2 = Dropout(dropout, generator)

    def forward(self, x, mask=None, kv_cache=None, need_weights=False):
        """x: (B, T, C) -> (B, T, C); with need_weights also the attention probabilities.

        mask: boolean, True = may attend (see minilm.nn.masks); kv_cache: see MultiHeadAttention.
        """
        h = self.norm1(x) if self.norm_first else x
        a = self.self_attn(h, mask=mask, kv_cache=kv_cache, need_weights=need_weights)
        a, weights = a if need_weights else (a, None)
        if self.norm_first:
            x = x + self.dropout1(a)
            x = x + self.dropout2(self.ff(self.norm2(x)))
        else:
            x = self.norm1(x + self.dropout1(a))
            x = self.norm2(x + self.dropout2(self.ff(x)))
        return (x, weights) if need_weights else x

    def extra_repr(self):
        return f"norm_first={self.norm_first}"


class TransformerDecoderBlock(Module):
    """TransformerDecoderBlock(d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
    norm_first=False, layer_norm_eps=1e-5, bias=True, attn_dropout=None, ff_dropout=None, generator=None).

    Pre-LN (norm_first=True):                    Post-LN (the original, torch's default):
        x = x + dropout1(self_attn(norm1(x)))        x = norm1(x + dropout1(self_attn(x)))
        x = x + dropout2(cross(norm2(x), memory))    x = norm2(x + dropout2(cross(x, memory)))
        x = x + dropout3(ff(norm3(x)))               x = norm3(x + dropout3(ff(x)))

    self_attn is causal (position t sees target positions <= t, so training on
    a whole shifted target at once matches generating it token by token);
    multihead_attn (cross) sees every memory position the memory mask allows.
    Both are minilm's one MultiHeadAttention.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 norm_first=False, layer_norm_eps=1e-5, bias=True, attn_dropout=None, ff_dropout=None,
                 generator=None):
        super().__init__()
        self.norm_first = norm_first
        p_attn = dropout if attn_dropout is None else attn_dropout
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=p_attn, bias=bias, causal=True,
                                            generator=generator)
        self.multihead_attn = MultiHeadAttention(d_model, nhead, dropout=p_attn, bias=bias, causal=False,
                                                 generator=generator)
        self.ff = FeedForward(d_model, dim_feedforward, dropout if ff_dropout is None else ff_dropout,
                              activation, bias, generator)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout, generator)
        self.dropout2 = Dropout(dropout, generator)
        self.dropout3 = Dropout(dropout, generator)

    def forward(self, x, memory, tgt_mask=None, memory_mask=None, need_weights=False):
        """x: (B, T, C) target side, memory: (B, S, C) encoder output -> (B, T, C).

        tgt_mask: extra self-attention mask (the causal rule is always applied).
        memory_mask: boolean, True = may attend, broadcastable to (B, nh, T, S);
            normally the source's key-padding mask (B, 1, 1, S).
        need_weights: also return the cross-attention probabilities (B, nh, T, S).
        """
        h = self.norm1(x) if self.norm_first else x
        a = self.self_attn(h, mask=tgt_mask)
        x = x + self.dropout1(a) if self.norm_first else self.norm1(x + self.dropout1(a))
        h = self.norm2(x) if self.norm_first else x
        a = self.multihead_attn(h, mask=memory_mask, need_weights=need_weights, memory=memory)
        a, weights = a if need_weights else (a, None)
        x = x + self.dropout2(a) if self.norm_first else self.norm2(x + self.dropout2(a))
        h = self.norm3(x) if self.norm_first else x
        x = x + self.dropout3(self.ff(h)) if self.norm_first else self.norm3(x + self.dropout3(self.ff(h)))
        return (x, weights) if need_weights else x

    def extra_repr(self):
        return f"norm_first={self.norm_first}"
