"""Positional information: the fixed sinusoids of the original Transformer, or a learned table.

Attention is blind to order (permuting the tokens permutes the outputs), so
each position gets a vector added to its token embedding.
"""
import math

import numpy as np

from minilm.nn.layers import Dropout, Embedding
from minilm.nn.module import Module


def sinusoidal_table(max_len, d_model, dtype=np.float32):
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)).

    (Vaswani et al. 2017, section 3.5.) Each pair of dimensions is a rotation
    at its own frequency, so PE[pos + k] is a fixed linear function of PE[pos].
    """
    position = np.arange(max_len, dtype=np.float64)[:, None]                     # (L, 1)
    div_term = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))  # (ceil(d/2),)
    table = np.zeros((max_len, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(position * div_term)
    table[:, 1::2] = np.cos(position * div_term[: d_model // 2])
    return table.astype(dtype)


class SinusoidalPositionalEncoding(Module):
    """x + PE[:T], then dropout; batch-first input (B, T, C).

    The table is a buffer, not a parameter, and it is left out of state_dict
    because the formula recreates it. (The seed's PyTorch module saves its `pe`
    buffer; the seed-model loader accepts that key and checks it matches.)
    """

    def __init__(self, d_model, dropout=0.1, max_len=5000, generator=None):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.dropout = Dropout(dropout, generator)
        self.register_buffer("pe", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, x):
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(f"SinusoidalPositionalEncoding: sequence length {t} exceeds the "
                             f"table's max_len {self.max_len}")
        return self.dropout(x + self.pe[:t])                                     # (B, T, C)

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}"


class LearnedPositionalEmbedding(Module):
    """A trained vector per position (GPT-2, BERT): returns table[positions], shape (T, C)."""

    def __init__(self, max_len, d_model, generator=None, std=0.02):
        super().__init__()
        self.max_len = max_len
        self.embedding = Embedding(max_len, d_model, generator=generator, std=std)

    @property
    def weight(self):
        return self.embedding.weight

    def forward(self, seq_len, offset=0):
        if offset + seq_len > self.max_len:
            raise ValueError(f"LearnedPositionalEmbedding: positions up to {offset + seq_len} exceed "
                             f"the table's {self.max_len} positions (the model's context length)")
        return self.embedding(np.arange(offset, offset + seq_len))              # (T, C)
