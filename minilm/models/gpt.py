"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019), GPT-2's shape.

    x_0 = wte[idx] + wpe[pos]                              learned token and position tables
    x   = x + Attention(LayerNorm(x))                      pre-LN blocks, causal, n_layer times
    x   = x + FeedForward(LayerNorm(x))                    W2 GELU(W1 x), width 4C
    logits = LayerNorm(x) wte^T                            the LM head is the token table

Training minimises the cross-entropy of each next token given the ones before
it; the causal mask keeps position t from seeing positions after t.

The blocks are minilm's one `nn.TransformerBlock` (norm_first=True,
causal=True, GELU-tanh). Hugging Face's GPT-2 names (transformer.h.0.attn.c_attn,
...) are mapped when a checkpoint is loaded or saved: see minilm/models/hf.py.
"""
import math

import numpy as np

from minilm.models import hf
from minilm.models._inputs import as_token_ids, check_id_range
from minilm.models.gpt_config import GPTConfig
from minilm.nn import functional as F
from minilm.nn.attention import KVCache
from minilm.nn.layers import Dropout, Embedding, LayerNorm, Linear
from minilm.nn.module import Module, ModuleList
from minilm.nn.transformer_block import TransformerBlock
from minilm.random import default_generator


class GPT(Module):
    """GPT(config, generator=None): logits = model(idx); logits, loss = model(idx, targets).

    Initialisation (GPT-2 / nanoGPT): every weight ~ N(0, 0.02^2), the two
    projections that end a residual branch (self_attn.out_proj, ff.linear2) ~
    N(0, (0.02 / sqrt(2 n_layer))^2) so the residual stream's variance does
    not grow with depth, biases 0, LayerNorms 1 and 0. All draws come from
    `generator` (a seeded numpy Generator; minilm's default one if None),
    which dropout then also uses.
    """

    def __init__(self, config, generator=None):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: expected a GPTConfig, got {type(config).__name__}")
        gen = generator if generator is not None else default_generator()
        self.config = config
        c = config.n_embd
        self.wte = Embedding(config.vocab_size, c, generator=gen)
        self.wpe = Embedding(config.block_size, c, generator=gen)
        self.drop = Dropout(config.dropout, gen)
        self.blocks = ModuleList(
            TransformerBlock(c, config.n_head, 4 * c, dropout=config.dropout, activation=config.activation,
                             norm_first=True, causal=True, layer_norm_eps=config.layer_norm_epsilon,
                             bias=config.bias, ff_dropout=0.0, generator=gen)
            for _ in range(config.n_layer))
        self.ln_f = LayerNorm(c, eps=config.layer_norm_epsilon, bias=config.bias)
        self.lm_head = Linear(c, config.vocab_size, bias=False, generator=gen)
        self.lm_head.weight = self.wte.weight                                   # tied: one Parameter, (V, C)
        self._init_weights(gen)

    def _init_weights(self, gen):
        std = self.config.initializer_range
        residual_std = std / math.sqrt(2 * self.config.n_layer)                # GPT-2's scaled init
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.data[...] = 0.0
            elif p.ndim == 2:                                                   # every matrix; not LayerNorms
                ends_branch = name.endswith(("self_attn.out_proj.weight", "ff.linear2.weight"))
                p.data[...] = gen.normal(0.0, residual_std if ends_branch else std, p.shape)

    def forward(self, idx, targets=None, kv_caches=None):
        """idx: (B, T) token ids -> logits (B, T, vocab_size); with targets (B, T) also the loss.

        targets[b, t] is the token that should follow idx[b, :t + 1] (already
        shifted, as in nanoGPT); entries equal to -100 are ignored.
        kv_caches: one KVCache per layer (model.new_kv_caches()); the new
        tokens continue after what the caches hold, and their keys and values
        are appended. Used by generation, normally under minilm.no_grad().
        """
        cfg = self.config
        ids = as_token_ids(idx, "GPT.forward", "idx")
        b, t = ids.shape
        if kv_caches is not None and len(kv_caches) != cfg.n_layer:
            raise ValueError(f"GPT.forward: kv_caches has {len(kv_caches)} entries, the model has "
                             f"{cfg.n_layer} layers (use model.new_kv_caches())")
        past = 0 if kv_caches is None else kv_caches[0].length
        if past + t > cfg.block_size:
            raise ValueError(f"GPT.forward: {past} cached + {t} new tokens exceed block_size "
                             f"{cfg.block_size} (the context length)")
        check_id_range(ids, cfg.vocab_size, "GPT.forward", "idx")
        x = self.drop(self.wte(ids) + self.wpe(np.arange(past, past + t)))     # (B, T, C) + (T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache=None if kv_caches is None else kv_caches[i])  # (B, T, C)
        logits = self.lm_head(self.ln_f(x))                                     # (B, T, C) -> (B, T, V)
        if targets is None:
            return logits
        tgt = as_token_ids(targets, "GPT.forward", "targets")
        if tgt.shape != ids.shape:
            raise ValueError(f"GPT.forward: targets of shape {tuple(tgt.shape)} must match idx {tuple(ids.shape)}")
        return logits, F.cross_entropy(logits, tgt)

    def new_kv_caches(self):
        """One empty KVCache per layer, for incremental decoding."""
        return [KVCache(self.config.block_size) for _ in range(self.config.n_layer)]

    # ----- size and cost --------------------------------------------------------------------
    def num_parameters(self, non_embedding=True):
        """Trainable parameters (the tied table counted once); non_embedding leaves out wpe (nanoGPT)."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.wpe.weight.numel() if non_embedding else total

    def flops_per_token(self, seq_len=None, training=True):
        """nanoGPT/PaLM: 6N + 12 L C T for training (2N + 4 L C T forward), N = non-embedding params."""
        return self.config.flops_per_token(seq_len, training)

    def report(self):
        return self.config.report()

    def load_state_dict(self, state, strict=True):
        """Our state_dict, or a Hugging Face GPT-2 one (names and layout mapped in minilm/models/hf.py)."""
        return super().load_state_dict(hf.gpt2_state_dict_to_ours(state), strict=strict)
