"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019), GPT-2's shape.

    x_0 = wte[idx] + wpe[pos]                              learned token and position tables
    x   = x + CausalSelfAttention(LayerNorm(x))            pre-LN blocks, n_layer times
    x   = x + MLP(LayerNorm(x))                            MLP(x) = W2 GELU(W1 x), width 4C
    logits = LayerNorm(x) wte^T                            the LM head is the token table

Training minimises the cross-entropy of each next token given the ones before
it; the causal mask keeps position t from seeing positions after t.

Parameter names are Hugging Face's GPT2LMHeadModel names (transformer.wte,
transformer.h.0.attn.c_attn, ...), and the projections are `Conv1D`s, GPT-2's
Linear with the weight stored (in, out), so a GPT-2 checkpoint's arrays load
as they are: no renaming, no transposing (see load_hf_gpt2).
"""
import json
import math
import os
import re

import numpy as np

from minilm.models._inputs import as_token_ids, check_id_range, pop_tied_copy
from minilm.models.gpt_config import GPTConfig
from minilm.nn import functional as F
from minilm.nn.attention import KVCache
from minilm.nn.layers import Dropout, Embedding, LayerNorm, Linear
from minilm.nn.module import Module, ModuleList, Parameter
from minilm.random import default_generator


class Conv1D(Module):
    """GPT-2's linear layer: y = x W + b with W stored as (in_features, out_features).

    It is an ordinary Linear whose weight is kept transposed (OpenAI's
    original TensorFlow code used a 1x1 convolution, hence the name).
    Initialised W ~ N(0, std^2), b = 0.
    """

    def __init__(self, in_features, out_features, bias=True, std=0.02, generator=None):
        super().__init__()
        gen = generator if generator is not None else default_generator()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter((gen.standard_normal((in_features, out_features)) * std).astype(np.float32))
        self.bias = Parameter(np.zeros(out_features, np.float32)) if bias else None

    def forward(self, x):
        out = x @ self.weight                                                   # (..., in) -> (..., out)
        return out + self.bias if self.bias is not None else out

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _layer_norm(config):
    ln = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
    if not config.bias:
        ln.bias = None                                                          # weight only
    return ln


class CausalSelfAttention(Module):
    """Multi-head self-attention where position t attends to positions <= t.

    With a KVCache the keys and values of earlier tokens come from the cache
    (they are constants: no gradient flows into them), and the new queries
    sit at positions cache.length, cache.length + 1, ...
    """

    def __init__(self, config, generator=None):
        super().__init__()
        c = config.n_embd
        residual_std = config.initializer_range / math.sqrt(2 * config.n_layer)   # GPT-2's scaled init
        self.n_head, self.n_embd, self.block_size = config.n_head, c, config.block_size
        self.dropout_p, self.generator = config.dropout, generator
        self.c_attn = Conv1D(c, 3 * c, config.bias, config.initializer_range, generator)
        self.c_proj = Conv1D(c, c, config.bias, residual_std, generator)
        self.resid_dropout = Dropout(config.dropout, generator)

    def forward(self, x, kv_cache=None):
        b, t, c = x.shape
        hs = c // self.n_head
        q, k, v = self.c_attn(x).split(c, axis=2)                               # (B, T, C) -> 3 x (B, T, C)
        q = q.reshape(b, t, self.n_head, hs).transpose(1, 2)                   # (B, T, C) -> (B, nh, T, hs)
        k = k.reshape(b, t, self.n_head, hs).transpose(1, 2)                   # (B, T, C) -> (B, nh, T, hs)
        v = v.reshape(b, t, self.n_head, hs).transpose(1, 2)                   # (B, T, C) -> (B, nh, T, hs)
        if kv_cache is not None:
            k, v = kv_cache.extend(k, v, self.block_size)                      # (B, nh, past + T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout_p,
                                           training=self.training, generator=self.generator)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(b, t, c)                                  # (B, nh, T, hs) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(Module):
    """c_proj(GELU(c_fc(x))) with a hidden width of 4 n_embd, then dropout."""

    def __init__(self, config, generator=None):
        super().__init__()
        c = config.n_embd
        residual_std = config.initializer_range / math.sqrt(2 * config.n_layer)
        self.c_fc = Conv1D(c, 4 * c, config.bias, config.initializer_range, generator)
        self.c_proj = Conv1D(4 * c, c, config.bias, residual_std, generator)
        self.dropout = Dropout(config.dropout, generator)
        self.approximate = "tanh" if config.activation == "gelu_tanh" else "none"

    def forward(self, x):
        h = F.gelu(self.c_fc(x), self.approximate)                              # (B, T, C) -> (B, T, 4C)
        return self.dropout(self.c_proj(h))                                     # (B, T, 4C) -> (B, T, C)


class Block(Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x)): GPT-2's pre-LN block."""

    def __init__(self, config, generator=None):
        super().__init__()
        self.ln_1 = _layer_norm(config)
        self.attn = CausalSelfAttention(config, generator)
        self.ln_2 = _layer_norm(config)
        self.mlp = MLP(config, generator)

    def forward(self, x, kv_cache=None):
        x = x + self.attn(self.ln_1(x), kv_cache=kv_cache)                      # (B, T, C)
        return x + self.mlp(self.ln_2(x))                                       # (B, T, C)


class GPTTransformer(Module):
    """The body (Hugging Face's GPT2Model): embeddings, the blocks, the final LayerNorm."""

    def __init__(self, config, generator=None):
        super().__init__()
        self.config = config
        std = config.initializer_range
        self.wte = Embedding(config.vocab_size, config.n_embd, generator=generator, std=std)
        self.wpe = Embedding(config.block_size, config.n_embd, generator=generator, std=std)
        self.drop = Dropout(config.dropout, generator)
        self.h = ModuleList(Block(config, generator) for _ in range(config.n_layer))
        self.ln_f = _layer_norm(config)

    def forward(self, ids, kv_caches=None):
        """ids (B, T) at positions past .. past + T - 1, past = the caches' length -> (B, T, C)."""
        cfg = self.config
        b, t = ids.shape
        if kv_caches is not None and len(kv_caches) != cfg.n_layer:
            raise ValueError(f"GPT.forward: kv_caches has {len(kv_caches)} entries, the model has "
                             f"{cfg.n_layer} layers (use model.new_kv_caches())")
        past = 0 if kv_caches is None else kv_caches[0].length
        if past + t > cfg.block_size:
            raise ValueError(f"GPT.forward: {past} cached + {t} new tokens exceed block_size "
                             f"{cfg.block_size} (the context length)")
        check_id_range(ids, cfg.vocab_size, "GPT.forward", "idx")
        tok = self.wte(ids)                                                     # (B, T) -> (B, T, C)
        pos = self.wpe(np.arange(past, past + t))                               # (T,) -> (T, C)
        x = self.drop(tok + pos)                                                # (B, T, C)
        for i, block in enumerate(self.h):
            x = block(x, kv_cache=None if kv_caches is None else kv_caches[i])  # (B, T, C)
        return self.ln_f(x)                                                     # (B, T, C)


class GPT(Module):
    """GPT(config, generator=None): logits = model(idx); logits, loss = model(idx, targets).

    Initialisation (GPT-2 / nanoGPT): every weight ~ N(0, 0.02^2), the two
    projections that end a residual branch (attn.c_proj, mlp.c_proj) ~
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
        self.transformer = GPTTransformer(config, gen)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False, generator=gen)
        self.lm_head.weight = self.transformer.wte.weight                       # tied: one Parameter, (V, C)

    def forward(self, idx, targets=None, kv_caches=None):
        """idx: (B, T) token ids -> logits (B, T, vocab_size); with targets (B, T) also the loss.

        targets[b, t] is the token that should follow idx[b, :t + 1] (already
        shifted, as in nanoGPT); entries equal to -100 are ignored.
        kv_caches: one KVCache per layer (model.new_kv_caches()); the new
        tokens continue after what the caches hold, and their keys and values
        are appended. Used by generation, normally under minilm.no_grad().
        """
        ids = as_token_ids(idx, "GPT.forward", "idx")
        x = self.transformer(ids, kv_caches=kv_caches)                          # (B, T, C)
        logits = self.lm_head(x)                                                # (B, T, C) -> (B, T, V)
        if targets is None:
            return logits
        tgt = as_token_ids(targets, "GPT.forward", "targets")
        if tgt.shape != ids.shape:
            raise ValueError(f"GPT.forward: targets of shape {tuple(tgt.shape)} must match idx {tuple(ids.shape)}")
        return logits, F.cross_entropy(logits, tgt)

    def new_kv_caches(self):
        """One empty KVCache per layer, for incremental decoding."""
        return [KVCache() for _ in range(self.config.n_layer)]

    # ----- size and cost --------------------------------------------------------------------
    def num_parameters(self, non_embedding=True):
        """Trainable parameters (the tied table counted once); non_embedding leaves out wpe (nanoGPT)."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.transformer.wpe.weight.numel() if non_embedding else total

    def flops_per_token(self, seq_len=None, training=True):
        """nanoGPT/PaLM: 6N + 12 L C T for training (2N + 4 L C T forward), N = non-embedding params."""
        return self.config.flops_per_token(seq_len, training)

    def report(self):
        return self.config.report()

    # ----- checkpoints ----------------------------------------------------------------------
    def load_state_dict(self, state, strict=True):
        """Our state_dict, or one with HF's names that also stores the tied `lm_head.weight`
        (it must equal transformer.wte.weight and is dropped)."""
        state = pop_tied_copy(state, "lm_head.weight", "transformer.wte.weight", "GPT", "GPT.load_state_dict")
        return super().load_state_dict(state, strict=strict)

    @staticmethod
    def from_hf_state_dict(state):
        """Map a Hugging Face GPT-2 state dict onto our names (a new dict; arrays are not copied).

        - keys of a bare GPT2Model ("h.0.attn.c_attn.weight", "wte.weight", as
          the hub's gpt2/model.safetensors stores them) get the "transformer." prefix;
        - the causal-mask buffers of older versions ("h.N.attn.bias",
          "h.N.attn.masked_bias") are dropped: they are not parameters;
        - Conv1D weights are already (in, out) on both sides: nothing is transposed;
        - "lm_head.weight", when present, is left for load_state_dict to check as tied.
        """
        out = {}
        for key, value in state.items():
            name = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
            if re.fullmatch(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)", name):
                continue
            out[name] = value
        return out


def load_hf_gpt2(folder, generator=None):
    """A GPT from a Hugging Face GPT-2 folder (config.json + model.safetensors), in eval mode."""
    from minilm.io.safetensors import load_file                                # lazy: io is optional here

    config_path = os.path.join(folder, "config.json")
    weights_path = os.path.join(folder, "model.safetensors")
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"load_hf_gpt2: {path} does not exist")
    with open(config_path, encoding="utf-8") as f:
        config = GPTConfig.from_hf_config(json.load(f))
    model = GPT(config, generator=generator)
    try:
        model.load_state_dict(GPT.from_hf_state_dict(load_file(weights_path)))
    except (KeyError, ValueError) as err:
        raise type(err)(f"load_hf_gpt2({weights_path}): {err}") from None
    return model.eval()


def save_hf_gpt2(model, folder):
    """Write config.json + model.safetensors in Hugging Face GPT2LMHeadModel form (lm_head stays tied)."""
    from minilm.io.safetensors import save_file

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(model.config.to_hf_config(), f, indent=2)
    save_file(model.state_dict(), os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
