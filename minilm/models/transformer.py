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

from minilm.models._inputs import as_padding_mask, as_token_ids
from minilm.nn.layers import Embedding, Linear, _uniform
from minilm.nn.module import Module, ModuleList
from minilm.nn.positional import SinusoidalPositionalEncoding, sinusoidal_table
from minilm.nn.transformer_block import TransformerBlock
from minilm.random import default_generator
from minilm.tensor import Tensor


def generate_square_subsequent_mask(size):
    """The causal mask as a boolean (T, T) array: entry [i, j] is True when query i may see key j (j <= i).

    PyTorch's nn.Transformer.generate_square_subsequent_mask returns the same
    rule as a float additive mask (0.0 on and below the diagonal, -inf above);
    `TransformerModel.forward` accepts either form.
    """
    if int(size) < 0:
        raise ValueError(f"generate_square_subsequent_mask: size must be >= 0, got {size}")
    return np.tril(np.ones((size, size), dtype=bool))                           # (T, T)


def as_bool_attn_mask(mask, seq_len, where="TransformerModel"):
    """A (T, T) attention mask as booleans, True = may attend.

    Accepts minilm's boolean convention directly, and PyTorch's float additive
    convention (0.0 = may attend, -inf = may not) by conversion. Any other
    float value would be a soft bias, which this model does not support.
    Beware: a *boolean* mask for torch.nn.Transformer means the opposite
    (True = blocked); minilm follows F.scaled_dot_product_attention (True = allowed).
    """
    arr = np.asarray(mask.numpy() if isinstance(mask, Tensor) else mask)
    if arr.shape != (seq_len, seq_len):
        raise ValueError(f"{where}: src_mask must have shape (T, T) = {(seq_len, seq_len)} "
                         f"for a sequence of length {seq_len}, got {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind != "f":
        raise TypeError(f"{where}: src_mask must be boolean (True = may attend) or a float additive "
                        f"mask (0 / -inf), got dtype {arr.dtype}")
    allowed = arr == 0.0
    blocked = np.isneginf(arr)
    if not (allowed | blocked).all():
        bad = arr[~(allowed | blocked)].flat[0]
        raise ValueError(f"{where}: a float src_mask may only hold 0.0 (attend) and -inf (blocked), "
                         f"found {bad!r}; additive attention biases are not supported")
    return allowed


class TransformerEncoder(Module):
    """A stack of encoder layers (the seed's `transformer_encoder`, torch.nn.TransformerEncoder)."""

    def __init__(self, layers):
        super().__init__()
        self.layers = ModuleList(layers)
        self.num_layers = len(self.layers)

    def forward(self, x, mask=None, attention_mask=None):
        for layer in self.layers:
            x = layer(x, attention_mask=attention_mask, attn_mask=mask)         # (B, T, C)
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
        mask = None if src_mask is None else as_bool_attn_mask(src_mask, t)
        keys = as_padding_mask(attention_mask, (b, t), "TransformerModel.forward")
        x = self.encoder(ids) * math.sqrt(self.d_model)                         # (B, T) -> (B, T, C)
        x = self.pos_encoder(x)                                                 # (B, T, C)
        x = self.transformer_encoder(x, mask=mask, attention_mask=keys)         # (B, T, C)
        return self.decoder(x)                                                  # (B, T, C) -> (B, T, V)

    # ----- weight exchange with the seed's PyTorch module ---------------------------------
    def _pe_key_check(self, table):
        """Check the seed's `pos_encoder.pe` buffer (max_len, 1, d_model) against our formula.

        PyTorch builds that table in float32, so its angle pos * w_i is rounded
        with a relative error of ~2^-24 each step; at position 5000 the sines
        then differ from the exact ones by up to ~2e-4. The tolerance is
        therefore 1e-6 plus 4 float32 ulps of the angle, which is what a correct
        float32 table meets and a wrong one (shifted, swapped sin/cos,
        different base) misses by orders of magnitude.
        """
        table = np.asarray(table)
        expected = (self.max_len, 1, self.d_model)
        if table.shape != expected:
            raise KeyError(f"TransformerModel.load_state_dict: 'pos_encoder.pe' has shape "
                           f"{table.shape}, expected {expected} (max_len, 1, d_model)")
        ours = sinusoidal_table(self.max_len, self.d_model, dtype=np.float64)                  # (L, C)
        freq = np.exp(np.arange(0, self.d_model, 2) * (-math.log(10000.0) / self.d_model))      # (C/2,)
        angle = np.arange(self.max_len)[:, None] * np.repeat(freq, 2)[None, :self.d_model]     # (L, C)
        tolerance = 1e-6 + 4 * np.finfo(np.float32).eps * angle
        diff = np.abs(table[:, 0, :].astype(np.float64) - ours)                                # (L, C)
        if not (diff <= tolerance).all():
            pos, dim = np.unravel_index(np.argmax(diff - tolerance), diff.shape)
            raise ValueError(f"TransformerModel.load_state_dict: 'pos_encoder.pe' is not the sinusoidal "
                             f"table: at position {pos}, dim {dim} it holds {table[pos, 0, dim]!r}, "
                             f"the formula gives {ours[pos, dim]!r}")

    def load_state_dict(self, state, strict=True):
        """Load our own state_dict or the seed's `torch.save(model.state_dict())` (as NumPy arrays).

        The seed also saves its positional table `pos_encoder.pe` (max_len, 1,
        d_model). It carries no trained information, so it is checked against
        our formula (see _pe_key_check) and dropped; our table is not part of
        state_dict because the formula recreates it.
        """
        state = dict(state)
        if "pos_encoder.pe" in state:
            self._pe_key_check(state.pop("pos_encoder.pe"))
        return super().load_state_dict(state, strict=strict)

    def seed_state_dict(self):
        """Our weights under the seed's names, with its `pos_encoder.pe` buffer added (float32).

        Turn each array into a torch tensor and the seed module loads it with
        load_state_dict(strict=True).
        """
        state = self.state_dict()
        state["pos_encoder.pe"] = sinusoidal_table(self.max_len, self.d_model)[:, None, :]  # (L, C) -> (L, 1, C)
        return state

    def extra_repr(self):
        return f"vocab_size={self.vocab_size}, d_model={self.d_model}, nhead={self.nhead}"
