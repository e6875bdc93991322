"""BERT (Devlin et al. 2019): a bidirectional post-LN Transformer encoder, with Hugging Face's names.

    x_0 = LayerNorm(word[ids] + position[t] + token_type[segment])    then dropout
    a   = LayerNorm(x + Dropout(SelfAttention(x)))                     every token sees every real token
    x   = LayerNorm(a + Dropout(W_out GELU(W_in a)))                   exact erf GELU, width intermediate_size
    pooled = tanh(W_pool x[:, 0] + b)                                  the [CLS] position

Masked language modelling predicts tokens that were hidden from the input:
    logits = LayerNorm(GELU(W_t x + b_t)) word^T + bias                the decoder is the word table

Every module and parameter is named as in Hugging Face's BertModel /
BertForMaskedLM (embeddings.word_embeddings, encoder.layer.0.attention.self.query,
..., cls.predictions.transform.dense), so BERT-family checkpoints such as
all-MiniLM-L6-v2 load with `from_pretrained(folder)` and no renaming.
"""
import json
import os
import warnings
from typing import NamedTuple

import numpy as np

from minilm.models._inputs import as_padding_mask, as_token_ids, check_id_range, pop_tied_copy
from minilm.models.bert_config import BertConfig
from minilm.nn import functional as F
from minilm.nn.layers import Dropout, Embedding, LayerNorm, Linear
from minilm.nn.module import Module, ModuleList, Parameter
from minilm.random import default_generator


def _linear(n_in, n_out, config, generator, bias=True):
    """A Linear initialised as Hugging Face initialises BERT: W ~ N(0, 0.02^2), b = 0."""
    layer = Linear(n_in, n_out, bias=bias, generator=generator)
    std = config.initializer_range
    layer.weight.data[...] = generator.standard_normal(layer.weight.shape) * std
    if bias:
        layer.bias.data[...] = 0.0
    return layer


class BertEmbeddings(Module):
    def __init__(self, config, generator):
        super().__init__()
        std, h = config.initializer_range, config.hidden_size
        self.config = config
        self.word_embeddings = Embedding(config.vocab_size, h, generator=generator, std=std)
        if 0 <= config.pad_token_id < config.vocab_size:
            self.word_embeddings.weight.data[config.pad_token_id] = 0.0                 # HF zeroes the [PAD] row
        self.position_embeddings = Embedding(config.max_position_embeddings, h, generator=generator, std=std)
        self.token_type_embeddings = Embedding(config.type_vocab_size, h, generator=generator, std=std)
        self.LayerNorm = LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob, generator)

    def forward(self, input_ids, token_type_ids):
        cfg = self.config
        t = input_ids.shape[1]
        if t > cfg.max_position_embeddings:
            raise ValueError(f"BertModel.forward: sequence length {t} exceeds max_position_embeddings "
                             f"{cfg.max_position_embeddings}")
        check_id_range(input_ids, cfg.vocab_size, "BertModel.forward", "input_ids")
        check_id_range(token_type_ids, cfg.type_vocab_size, "BertModel.forward", "token_type_ids",
                       "token types")
        x = self.word_embeddings(input_ids)                                     # (B, T) -> (B, T, H)
        x = x + self.position_embeddings(np.arange(t))                          # + (T, H)
        x = x + self.token_type_embeddings(token_type_ids)                      # + (B, T, H)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(Module):
    """Multi-head attention with separate query/key/value projections; padded keys are never attended."""

    def __init__(self, config, generator):
        super().__init__()
        h = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.head_size = h // config.num_attention_heads
        self.query = _linear(h, h, config, generator)
        self.key = _linear(h, h, config, generator)
        self.value = _linear(h, h, config, generator)
        self.dropout_p, self.generator = config.attention_probs_dropout_prob, generator

    def _heads(self, x):
        b, t, _ = x.shape
        x = x.reshape(b, t, self.num_attention_heads, self.head_size)         # (B, T, H) -> (B, T, nh, hs)
        return x.transpose(1, 2)                                                # (B, T, nh, hs) -> (B, nh, T, hs)

    def forward(self, x, key_mask=None, need_weights=False):
        b, t, h = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))  # (B, nh, T, hs)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=self.dropout_p,
                                             training=self.training, return_weights=need_weights,
                                             generator=self.generator)            # (B, nh, T, hs)
        y, weights = out if need_weights else (out, None)
        return y.transpose(1, 2).reshape(b, t, h), weights                     # (B, nh, T, hs) -> (B, T, H)


class BertSelfOutput(Module):
    """LayerNorm(input + Dropout(dense(attention output)))."""

    def __init__(self, config, generator):
        super().__init__()
        self.dense = _linear(config.hidden_size, config.hidden_size, config, generator)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob, generator)

    def forward(self, hidden, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)     # (B, T, H)


class BertAttention(Module):
    def __init__(self, config, generator):
        super().__init__()
        self.self = BertSelfAttention(config, generator)
        self.output = BertSelfOutput(config, generator)

    def forward(self, x, key_mask=None, need_weights=False):
        y, weights = self.self(x, key_mask, need_weights)
        return self.output(y, x), weights


class BertIntermediate(Module):
    """GELU(dense(x)): (B, T, H) -> (B, T, I)."""

    def __init__(self, config, generator):
        super().__init__()
        self.dense = _linear(config.hidden_size, config.intermediate_size, config, generator)
        self.approximate = config.gelu_approximate

    def forward(self, x):
        return F.gelu(self.dense(x), self.approximate)                          # (B, T, H) -> (B, T, I)


class BertOutput(Module):
    """LayerNorm(residual + Dropout(dense(h))): (B, T, I) -> (B, T, H)."""

    def __init__(self, config, generator):
        super().__init__()
        self.dense = _linear(config.intermediate_size, config.hidden_size, config, generator)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob, generator)

    def forward(self, hidden, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)     # (B, T, I) -> (B, T, H)


class BertLayer(Module):
    def __init__(self, config, generator):
        super().__init__()
        self.attention = BertAttention(config, generator)
        self.intermediate = BertIntermediate(config, generator)
        self.output = BertOutput(config, generator)

    def forward(self, x, key_mask=None, need_weights=False):
        a, weights = self.attention(x, key_mask, need_weights)                  # (B, T, H)
        return self.output(self.intermediate(a), a), weights                    # (B, T, H)


class BertEncoder(Module):
    def __init__(self, config, generator):
        super().__init__()
        self.layer = ModuleList(BertLayer(config, generator) for _ in range(config.num_hidden_layers))


class BertPooler(Module):
    """tanh(dense(x[:, 0])): the [CLS] vector, (B, T, H) -> (B, H)."""

    def __init__(self, config, generator):
        super().__init__()
        self.dense = _linear(config.hidden_size, config.hidden_size, config, generator)

    def forward(self, x):
        return self.dense(x[:, 0]).tanh()                                       # (B, T, H) -> (B, H)


class BertModelOutput(NamedTuple):
    last_hidden_state: object            # Tensor (B, T, H)
    pooler_output: object = None         # Tensor (B, H), or None without a pooler
    attentions: object = None            # list of (B, nh, T, T) Tensors with output_attentions=True


class BertModel(Module):
    """BertModel(config, add_pooling_layer=True, generator=None).

    forward(input_ids, attention_mask=None, token_type_ids=None) returns
    BertModelOutput(last_hidden_state (B, T, H), pooler_output (B, H)), a
    tuple. attention_mask (B, T): 1 = real token, 0 = padding; padded
    positions are never attended, so they cannot change the outputs at real
    positions (their own outputs are meaningless). token_type_ids default 0.
    Initialised as Hugging Face does: weights ~ N(0, 0.02^2), biases 0,
    LayerNorms 1 and 0, the [PAD] word vector 0.
    """

    def __init__(self, config, add_pooling_layer=True, generator=None):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"BertModel: expected a BertConfig, got {type(config).__name__}")
        gen = generator if generator is not None else default_generator()
        self.config = config
        self.embeddings = BertEmbeddings(config, gen)
        self.encoder = BertEncoder(config, gen)
        self.pooler = BertPooler(config, gen) if add_pooling_layer else None

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_attentions=False):
        ids = as_token_ids(input_ids, "BertModel.forward", "input_ids")
        if token_type_ids is None:
            types = np.zeros_like(ids)
        else:
            types = as_token_ids(token_type_ids, "BertModel.forward", "token_type_ids")
            if types.shape != ids.shape:
                raise ValueError(f"BertModel.forward: token_type_ids of shape {tuple(types.shape)} must "
                                 f"match input_ids {tuple(ids.shape)}")
        keys = as_padding_mask(attention_mask, ids.shape, "BertModel.forward")
        key_mask = None if keys is None else keys[:, None, None, :]             # (B, T) -> (B, 1, 1, T)
        x = self.embeddings(ids, types)                                         # (B, T, H)
        attentions = [] if output_attentions else None
        for layer in self.encoder.layer:
            x, weights = layer(x, key_mask, output_attentions)                  # (B, T, H)
            if output_attentions:
                attentions.append(weights)
        pooled = self.pooler(x) if self.pooler is not None else None           # (B, H)
        return BertModelOutput(x, pooled, attentions)

    def load_state_dict(self, state, strict=True):
        """Our state_dict or a Hugging Face BertModel one; `embeddings.position_ids` (a buffer
        holding 0..P-1, not a parameter) is checked and dropped, legacy gamma/beta are renamed."""
        return super().load_state_dict(_hf_bert_keys(state, "", self.config), strict=strict)

    @classmethod
    def from_pretrained(cls, folder, add_pooling_layer=None, generator=None):
        """Load config.json + model.safetensors of a Hugging Face BERT (BertModel, or a checkpoint
        with the "bert." prefix whose "cls." heads are then left out with a warning). The pooler is
        built when the checkpoint has one, unless add_pooling_layer says otherwise. Eval mode."""
        config, state = _read_hf_folder(folder, "BertModel.from_pretrained")
        if any(k.startswith("bert.") for k in state):
            heads = sorted(k for k in state if not k.startswith("bert."))
            if heads:
                warnings.warn(f"BertModel.from_pretrained({folder}): ignoring {len(heads)} head weights "
                              f"({', '.join(heads[:4])}{', ...' if len(heads) > 4 else ''})")
            state = {k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}
        if add_pooling_layer is None:
            add_pooling_layer = any(k.startswith("pooler.") for k in state)
        model = cls(config, add_pooling_layer=add_pooling_layer, generator=generator)
        try:
            model.load_state_dict(state)
        except (KeyError, ValueError) as err:
            raise type(err)(f"BertModel.from_pretrained({folder}): {err}") from None
        return model.eval()


class BertPredictionHeadTransform(Module):
    def __init__(self, config, generator):
        super().__init__()
        self.dense = _linear(config.hidden_size, config.hidden_size, config, generator)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.approximate = config.gelu_approximate

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x), self.approximate))          # (B, T, H)


class BertLMPredictionHead(Module):
    """logits = transform(x) word_embeddings^T + bias; `decoder.weight` is the word table itself."""

    def __init__(self, config, word_embeddings, generator):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config, generator)
        self.decoder = Linear(config.hidden_size, config.vocab_size, bias=False, generator=generator)
        self.decoder.weight = word_embeddings.weight                            # tied: one Parameter, (V, H)
        self.bias = Parameter(np.zeros(config.vocab_size, np.float32))

    def forward(self, x):
        return self.decoder(self.transform(x)) + self.bias                      # (B, T, H) -> (B, T, V)


class BertOnlyMLMHead(Module):
    def __init__(self, config, word_embeddings, generator):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, word_embeddings, generator)

    def forward(self, x):
        return self.predictions(x)


class BertForMaskedLM(Module):
    """BERT with the masked-language-modelling head; `bert.` prefixes the encoder's names as in HF.

    forward(input_ids, attention_mask=None, token_type_ids=None, labels=None)
    returns logits (B, T, V), or (logits, loss) when labels (B, T) are given:
    the mean cross-entropy over positions whose label is not -100.
    """

    def __init__(self, config, generator=None):
        super().__init__()
        gen = generator if generator is not None else default_generator()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False, generator=gen)
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings, gen)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state  # (B, T, H)
        logits = self.cls(hidden)                                               # (B, T, H) -> (B, T, V)
        if labels is None:
            return logits
        targets = as_token_ids(labels, "BertForMaskedLM.forward", "labels")
        if targets.shape != logits.shape[:2]:
            raise ValueError(f"BertForMaskedLM.forward: labels of shape {tuple(targets.shape)} must match "
                             f"input_ids {logits.shape[:2]}")
        return logits, F.cross_entropy(logits, targets, ignore_index=-100)

    def load_state_dict(self, state, strict=True):
        """Our state_dict or Hugging Face's BertForMaskedLM one: the tied copies
        cls.predictions.decoder.weight / .bias are checked equal and dropped, like position_ids."""
        state = _hf_bert_keys(state, "bert.", self.config)
        state = pop_tied_copy(state, "cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight",
                              "BertForMaskedLM", "BertForMaskedLM.load_state_dict")
        state = pop_tied_copy(state, "cls.predictions.decoder.bias", "cls.predictions.bias",
                              "BertForMaskedLM", "BertForMaskedLM.load_state_dict")
        return super().load_state_dict(state, strict=strict)

    @classmethod
    def from_pretrained(cls, folder, generator=None):
        """Load a Hugging Face BertForMaskedLM / BertForPreTraining folder (the pooler and the
        next-sentence head of the latter are left out with a warning). Eval mode."""
        config, state = _read_hf_folder(folder, "BertForMaskedLM.from_pretrained")
        if not any(k.startswith("cls.predictions.") for k in state):
            raise KeyError(f"BertForMaskedLM.from_pretrained({folder}): the checkpoint has no MLM head "
                           f"(no cls.predictions.* keys); load it with BertModel.from_pretrained")
        unused = sorted(k for k in state if k.startswith(("bert.pooler.", "cls.seq_relationship.")))
        if unused:
            warnings.warn(f"BertForMaskedLM.from_pretrained({folder}): ignoring {', '.join(unused)}")
            state = {k: v for k, v in state.items() if k not in unused}
        model = cls(config, generator=generator)
        try:
            model.load_state_dict(state)
        except (KeyError, ValueError) as err:
            raise type(err)(f"BertForMaskedLM.from_pretrained({folder}): {err}") from None
        return model.eval()


def _hf_bert_keys(state, prefix, config):
    """Old-style LayerNorm.gamma/.beta -> .weight/.bias; check and drop `{prefix}embeddings.position_ids`."""
    out = {}
    for key, value in state.items():
        if key.endswith(".gamma") or key.endswith(".beta"):
            key = key[: key.rfind(".")] + (".weight" if key.endswith(".gamma") else ".bias")
        out[key] = value
    key = f"{prefix}embeddings.position_ids"
    if key in out:
        ids = np.asarray(out.pop(key))
        if ids.reshape(-1).tolist() != list(range(ids.size)) or ids.size != config.max_position_embeddings:
            raise ValueError(f"load_state_dict: {key!r} of shape {ids.shape} is not "
                             f"0..{config.max_position_embeddings - 1}; minilm's BERT always uses "
                             f"absolute positions 0, 1, 2, ...")
    return out


def _read_hf_folder(folder, where):
    from minilm.io.safetensors import load_file                                # lazy: io is optional here

    config_path = os.path.join(folder, "config.json")
    weights_path = os.path.join(folder, "model.safetensors")
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{where}: {path} does not exist")
    with open(config_path, encoding="utf-8") as f:
        config = BertConfig.from_hf_config(json.load(f))
    return config, load_file(weights_path)
