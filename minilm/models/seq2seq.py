"""An encoder-decoder Transformer (Vaswani et al. 2017, section 3.1): the original shape, for translation.

    memory = Encoder(Embed_src(src) + PE)                  non-causal TransformerBlocks over the source
    h      = Decoder(Embed_tgt(tgt_in) + PE, memory)       causal self-attention, then cross-attention
    logits = LayerNorm(h) W_head^T                         (B, T, tgt_vocab_size)

The encoder reads the whole source at once. The decoder is a language model
of the target that, in every layer, also looks at the source through
cross-attention (section 3.2.3): its queries ask "which source words matter
for the token I am about to write?", and the keys and values are the
encoder's output. Training feeds the target shifted right (tgt_in = <bos> y1
.. y_{n-1}, targets = y1 .. y_n) and the causal mask keeps each position from
seeing the token it must predict; generation (minilm.apps.translate) encodes
once and calls `decode` again for each new token.

Blocks are minilm's own: nn.TransformerBlock for the encoder and
nn.TransformerDecoderBlock for the decoder, pre-LN (norm_first=True) with a
final LayerNorm on each side, which trains from scratch without warm-up
tricks. Positions are the fixed sinusoids of section 3.5, added to token
embeddings scaled by sqrt(d_model) (section 3.4).
"""
import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from minilm.models._inputs import as_token_ids, check_id_range
from minilm.nn import functional as F
from minilm.nn import masks
from minilm.nn.layers import Embedding, LayerNorm, Linear
from minilm.nn.module import Module, ModuleList
from minilm.nn.positional import sinusoidal_table
from minilm.nn.transformer_block import TransformerBlock, TransformerDecoderBlock
from minilm.random import default_generator


@dataclass
class Seq2SeqConfig:
    """Sizes of a Seq2SeqTransformer; pad_id marks padding in the source (and is never a target)."""

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 128
    nhead: int = 4
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dim_feedforward: int = 512
    dropout: float = 0.0
    max_len: int = 64
    pad_id: int = 0
    activation: str = "relu"

    def __post_init__(self):
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "nhead", "dim_feedforward", "max_len"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"Seq2SeqConfig: {name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.nhead:
            raise ValueError(f"Seq2SeqConfig: d_model={self.d_model} is not divisible by nhead={self.nhead}")
        if self.num_encoder_layers < 0 or self.num_decoder_layers < 1:
            raise ValueError("Seq2SeqConfig: need num_encoder_layers >= 0 and num_decoder_layers >= 1")

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))


class Seq2SeqTransformer(Module):
    """Seq2SeqTransformer(config, generator=None).

    logits = model(src, tgt_in); logits, loss = model(src, tgt_in, targets=targets)
    memory = model.encode(src); logits = model.decode(tgt_in, memory, src_mask)
    """

    def __init__(self, config, generator=None):
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise TypeError(f"Seq2SeqTransformer: expected a Seq2SeqConfig, got {type(config).__name__}")
        gen = generator if generator is not None else default_generator()
        self.config = cfg = config
        c = cfg.d_model
        # std 1/sqrt(C), times sqrt(C) in forward: unit-size vectors, the sinusoids' size
        self.src_embed = Embedding(cfg.src_vocab_size, c, generator=gen, std=c ** -0.5)
        self.tgt_embed = Embedding(cfg.tgt_vocab_size, c, generator=gen, std=c ** -0.5)
        self.register_buffer("pe", sinusoidal_table(cfg.max_len, c), persistent=False)
        block = dict(dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout, activation=cfg.activation,
                     norm_first=True, generator=gen)
        self.encoder_layers = ModuleList(TransformerBlock(c, cfg.nhead, causal=False, **block)
                                         for _ in range(cfg.num_encoder_layers))
        self.decoder_layers = ModuleList(TransformerDecoderBlock(c, cfg.nhead, **block)
                                         for _ in range(cfg.num_decoder_layers))
        self.encoder_norm = LayerNorm(c)
        self.decoder_norm = LayerNorm(c)
        self.lm_head = Linear(c, cfg.tgt_vocab_size, bias=False, generator=gen)

    def _embed(self, table, ids, where, name):
        b, t = ids.shape
        if t > self.config.max_len:
            raise ValueError(f"{where}: {name} has length {t}, more than max_len={self.config.max_len}")
        check_id_range(ids, table.num_embeddings, where, name)
        return table(ids) * math.sqrt(self.config.d_model) + self.pe[:t]      # (B, T, C)

    def source_mask(self, src):
        """(B, S) bool, True = real source token (src != pad_id)."""
        return as_token_ids(src, "Seq2SeqTransformer", "src") != self.config.pad_id

    def encode(self, src, src_mask=None):
        """src: (B, S) ids -> memory (B, S, C). src_mask: (B, S), 1 = real token; default src != pad_id."""
        ids = as_token_ids(src, "Seq2SeqTransformer.encode", "src")
        keep = self.source_mask(ids) if src_mask is None else src_mask
        mask = masks.padding_mask(keep, ids.shape, "Seq2SeqTransformer.encode")   # (B, 1, 1, S)
        x = self._embed(self.src_embed, ids, "Seq2SeqTransformer.encode", "src")
        for layer in self.encoder_layers:
            x = layer(x, mask=mask)                                             # (B, S, C)
        return self.encoder_norm(x)

    def decode(self, tgt_in, memory, src_mask, need_weights=False):
        """tgt_in: (B, T) ids, memory: (B, S, C), src_mask: (B, S) -> logits (B, T, V).

        need_weights: also return each decoder layer's cross-attention
        probabilities, a list of (B, nh, T, S) arrays (for heatmaps).
        """
        ids = as_token_ids(tgt_in, "Seq2SeqTransformer.decode", "tgt_in")
        if memory.shape[0] != ids.shape[0]:
            raise ValueError(f"Seq2SeqTransformer.decode: memory holds {memory.shape[0]} sequences, "
                             f"tgt_in {ids.shape[0]}")
        memory_mask = masks.padding_mask(src_mask, memory.shape[:2], "Seq2SeqTransformer.decode")
        x = self._embed(self.tgt_embed, ids, "Seq2SeqTransformer.decode", "tgt_in")
        weights = []
        for layer in self.decoder_layers:
            x = layer(x, memory, memory_mask=memory_mask, need_weights=need_weights)
            if need_weights:
                x, w = x
                weights.append(w.numpy())
        logits = self.lm_head(self.decoder_norm(x))                             # (B, T, C) -> (B, T, V)
        return (logits, weights) if need_weights else logits

    def forward(self, src, tgt_in, src_mask=None, targets=None):
        """Logits (B, T, V) of the next target token at each position; with targets (B, T) also the loss.

        targets equal to -100 (padding) do not count in the mean cross-entropy.
        """
        ids = as_token_ids(src, "Seq2SeqTransformer.forward", "src")
        keep = self.source_mask(ids) if src_mask is None else np.asarray(src_mask, dtype=bool)
        logits = self.decode(tgt_in, self.encode(ids, keep), keep)
        if targets is None:
            return logits
        tgt = as_token_ids(targets, "Seq2SeqTransformer.forward", "targets")
        if tgt.shape != logits.shape[:2]:
            raise ValueError(f"Seq2SeqTransformer.forward: targets of shape {tuple(tgt.shape)} must match "
                             f"tgt_in {tuple(logits.shape[:2])}")
        return logits, F.cross_entropy(logits, tgt, ignore_index=-100)

    def extra_repr(self):
        cfg = self.config
        return (f"d_model={cfg.d_model}, nhead={cfg.nhead}, encoder_layers={cfg.num_encoder_layers}, "
                f"decoder_layers={cfg.num_decoder_layers}")
