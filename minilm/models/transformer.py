"""The seed article's `TransformerModel` (section 4), rebuilt on minilm.

    h0 = Embedding(src) * sqrt(d_model) + PE[:T]           (Vaswani et al. 2017, 3.4 and 3.5)
    h_l = EncoderLayer_l(h_{l-1})                         post-LN, ReLU feed-forward of width 2048
    logits = h_L W_dec^T + b_dec                          (B, T, vocab_size)

Each encoder layer is torch.nn.TransformerEncoderLayer's default (post-LN):
    x = LayerNorm(x + Dropout(SelfAttention(x)))
    x = LayerNorm(x + Dropout(Linear2(Dropout(ReLU(Linear1(x))))))

The parameter names are the seed's, so `torch.save(seed_model.state_dict())`
loads here unchanged (see `TransformerModel.load_state_dict`).
"""
import math

import numpy as np

from minilm.models import seed
from minilm.models._inputs import as_token_ids
from minilm.nn import masks
from minilm.nn.layers import Embedding, Linear, _uniform
from minilm.nn.module import Module, ModuleList
from minilm.nn.positional import SinusoidalPositionalEncoding
from minilm.nn.transformer_block import TransformerBlock
from minilm.random import default_generator


def generate_square_subsequent_mask(size):
    """The causal mask as a boolean (T, T) array: entry [i, j] is True when query i may see key j (j <= i).

    PyTorch's nn.Transformer.generate_square_subsequent_mask returns the same
    rule as a float additive mask (0.0 on and below the diagonal, -inf above);
    `TransformerModel.forward` accepts either form (see minilm.nn.masks).
    """
    if int(size) < 0:
        raise ValueError(f"generate_square_subsequent_mask: size must be >= 0, got {size}")
    return masks.causal_mask(size, size)                                        # (T, T)


class TransformerEncoder(Module):
    """A stack of encoder layers (the seed's `transformer_encoder`, torch.nn.TransformerEncoder)."""

    def __init__(self, layers):
        super().__init__()
        self.layers = ModuleList(layers)
        self.num_layers = len(self.layers)

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask=mask)                                             # (B, T, C)
        return x


class TransformerModel(Module):
    """The seed's Transformer language model: embed, add sinusoids, encode, project to the vocabulary.

    TransformerModel(vocab_size, d_model=512, nhead=8, num_layers=6,
                     dim_feedforward=2048, dropout=0.1, max_len=5000)

    The defaults are the seed's (its class fixes dim_feedforward=2048 and the
    positional table's max_len=5000; here both are arguments with those values).

    One layout difference from the seed: the seed's module is sequence-first,
    src (T, B) -> output (T, B, vocab_size), because nn.TransformerEncoderLayer
    defaults to batch_first=False. minilm is batch-first everywhere:
    src (B, T) -> logits (B, T, vocab_size). Weights are layout-free, so they
    load unchanged; only inputs and outputs are transposed: for the same
    tokens, minilm_logits == seed_output.transpose(1, 0, 2).

    Initialisation follows the seed's init_weights: the embedding and decoder
    weights ~ U(-0.1, 0.1), decoder bias 0; the encoder layers keep
    PyTorch's defaults (Xavier-uniform in_proj, zero attention biases,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the feed-forward linears).
    """

    model_type = "Transformer"

    def __init__(self, vocab_size, d_model=512, nhead=8, num_layers=6, dim_feedforward=2048,
                 dropout=0.1, max_len=5000, generator=None):
        super().__init__()
        if d_model % nhead != 0:
            raise ValueError(f"TransformerModel: d_model={d_model} is not divisible by nhead={nhead}")
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("nhead", nhead),
                            ("num_layers", num_layers), ("dim_feedforward", dim_feedforward),
                            ("max_len", max_len)):
            if int(value) <= 0:
                raise ValueError(f"TransformerModel: {name} must be positive, got {value}")
        gen = generator if generator is not None else default_generator()
        self.vocab_size, self.d_model, self.nhead, self.max_len = vocab_size, d_model, nhead, max_len
        self.pos_encoder = SinusoidalPositionalEncoding(d_model, dropout, max_len, gen)
        layers = [TransformerBlock(d_model, nhead, dim_feedforward, dropout, activation="relu",
                                   norm_first=False, causal=False, layer_norm_eps=1e-5, generator=gen)
                  for _ in range(num_layers)]
        self.transformer_encoder = TransformerEncoder(layers)
        self.encoder = Embedding(vocab_size, d_model, generator=gen)
        self.decoder = Linear(d_model, vocab_size, generator=gen)
        self.init_weights(gen)

    def init_weights(self, generator=None):
        """The seed's init: encoder and decoder weights ~ U(-0.1, 0.1), decoder bias = 0."""
        gen = generator if generator is not None else default_generator()
        init_range = 0.1
        self.encoder.weight.data[...] = _uniform(gen, self.encoder.weight.shape, init_range)
        self.decoder.bias.data[...] = 0.0
        self.decoder.weight.data[...] = _uniform(gen, self.decoder.weight.shape, init_range)

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)

    def forward(self, src, src_mask=None, attention_mask=None):
        """src: (B, T) token ids -> logits (B, T, vocab_size).

        src_mask: optional (T, T) mask, boolean (True = query i may attend key j)
            or PyTorch's float additive form (0 / -inf), e.g. the causal mask
            from generate_square_subsequent_mask(T).
        attention_mask: optional (B, T) key-padding mask, 1 = real token
            (a minilm extra; the seed has none).
        """
        ids = as_token_ids(src, "TransformerModel.forward", "src")
        b, t = ids.shape
        if t > self.max_len:
            raise ValueError(f"TransformerModel.forward: sequence length {t} exceeds the positional "
                             f"table's max_len {self.max_len}")
        mask = None
        if src_mask is not None:
            mask = masks.from_additive(src_mask, "TransformerModel.forward: src_mask")
            if mask.shape != (t, t):
                raise ValueError(f"TransformerModel.forward: src_mask must have shape (T, T) = {(t, t)} "
                                 f"for a sequence of length {t}, got {mask.shape}")
        mask = masks.combine(mask, masks.padding_mask(attention_mask, (b, t), "TransformerModel.forward"))
        x = self.encoder(ids) * math.sqrt(self.d_model)                         # (B, T) -> (B, T, C)
        x = self.pos_encoder(x)                                                 # (B, T, C)
        x = self.transformer_encoder(x, mask=mask)                              # (B, T, C)
        return self.decoder(x)                                                  # (B, T, C) -> (B, T, V)

    def load_state_dict(self, state, strict=True):
        """Load our own state_dict or the seed's `torch.save(model.state_dict())` (as NumPy arrays);
        the seed's names are mapped and its positional table checked in minilm/models/seed.py."""
        state = seed.from_seed_state_dict(state, self.max_len, self.d_model)
        return super().load_state_dict(state, strict=strict)

    def seed_state_dict(self):
        """Our weights under the seed's names (see minilm.models.seed.seed_state_dict)."""
        return seed.seed_state_dict(self)

    def extra_repr(self):
        return f"vocab_size={self.vocab_size}, d_model={self.d_model}, nhead={self.nhead}"
