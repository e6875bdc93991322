"""BERT (Devlin et al. 2019): a bidirectional post-LN Transformer encoder.

    x_0 = LayerNorm(word[ids] + position[t] + token_type[segment])    then dropout
    a   = LayerNorm(x + Dropout(Attention(x)))                         every token sees every real token
    x   = LayerNorm(a + Dropout(W_2 GELU(W_1 a)))                      exact erf GELU, width intermediate_size
    pooled = tanh(W_pool x[:, 0] + b)                                  the [CLS] position

Masked language modelling predicts tokens that were hidden from the input:
    logits = LayerNorm(GELU(W_t x + b_t)) word^T + bias                the decoder is the word table

The layers are minilm's one `nn.TransformerBlock` (norm_first=False, GELU),
the same block as the seed's model and GPT. Hugging Face's names
(encoder.layer.0.attention.self.query, ...) are mapped when a checkpoint is
loaded (see minilm/models/hf.py), so BERT-family checkpoints such as
all-MiniLM-L6-v2 load with `BertModel.from_pretrained(folder)`.
"""
from typing import NamedTuple

import numpy as np

from minilm.models import hf
from minilm.models._inputs import as_token_ids, check_id_range
from minilm.models.bert_config import BertConfig
from minilm.nn import functional as F
from minilm.nn import masks
from minilm.nn.layers import Dropout, Embedding, LayerNorm, Linear
from minilm.nn.module import Module, ModuleList, Parameter
from minilm.nn.transformer_block import TransformerBlock
from minilm.random import default_generator


def _init_like_hf(model, config, generator):
    """Hugging Face's BERT initialisation: every matrix ~ N(0, 0.02^2), biases 0, LayerNorms 1 and 0,
    the [PAD] word vector 0."""
    for name, p in model.named_parameters():
        if p.ndim == 2:                                                         # every matrix and table
            p.data[...] = generator.normal(0.0, config.initializer_range, p.shape)
        elif name.endswith("bias"):                                             # LayerNorm weights stay 1
            p.data[...] = 0.0


class BertEmbeddings(Module):
    """LayerNorm(word[ids] + position[t] + token_type[segment]), then dropout: (B, T) -> (B, T, H)."""

    def __init__(self, config, generator):
        super().__init__()
        h = config.hidden_size
        self.config = config
        self.word_embeddings = Embedding(config.vocab_size, h, generator=generator)
        self.position_embeddings = Embedding(config.max_position_embeddings, h, generator=generator)
        self.token_type_embeddings = Embedding(config.type_vocab_size, h, generator=generator)
        self.norm = LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob, generator)

    def forward(self, input_ids, token_type_ids, inputs_embeds=None):
        """inputs_embeds (B, T, H), if given, replaces word[ids]: a soft prompt is spliced in that way."""
        cfg = self.config
        t = token_type_ids.shape[1]
        if t > cfg.max_position_embeddings:
            raise ValueError(f"BertModel.forward: sequence length {t} exceeds max_position_embeddings "
                             f"{cfg.max_position_embeddings}")
        check_id_range(token_type_ids, cfg.type_vocab_size, "BertModel.forward", "token_type_ids",
                       "token types")
        if inputs_embeds is None:
            check_id_range(input_ids, cfg.vocab_size, "BertModel.forward", "input_ids")
            x = self.word_embeddings(input_ids)                                 # (B, T) -> (B, T, H)
        else:
            x = inputs_embeds                                                   # (B, T, H)
        x = x + self.position_embeddings(np.arange(t))                          # + (T, H)
        x = x + self.token_type_embeddings(token_type_ids)                      # + (B, T, H)
        return self.dropout(self.norm(x))


class BertModelOutput(NamedTuple):
    last_hidden_state: object            # Tensor (B, T, H)
    pooler_output: object = None         # Tensor (B, H), or None without a pooler
    attentions: object = None            # list of (B, nh, T, T) Tensors with output_attentions=True


class BertModel(Module):
    """BertModel(config, add_pooling_layer=True, generator=None).

    forward(input_ids, attention_mask=None, token_type_ids=None) returns
    BertModelOutput(last_hidden_state (B, T, H), pooler_output (B, H), attentions),
    a tuple. inputs_embeds=(B, T, H) instead of input_ids feeds vectors in place of
    the word embeddings (prompt tuning uses it). attention_mask (B, T): 1 = real token, 0 = padding; padded
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
        h = config.hidden_size
        self.embeddings = BertEmbeddings(config, gen)
        self.blocks = ModuleList(
            TransformerBlock(h, config.num_attention_heads, config.intermediate_size,
                             dropout=config.hidden_dropout_prob, attn_dropout=config.attention_probs_dropout_prob,
                             ff_dropout=0.0, activation="gelu" if config.gelu_approximate == "none" else "gelu_tanh",
                             norm_first=False, layer_norm_eps=config.layer_norm_eps, generator=gen)
            for _ in range(config.num_hidden_layers))
        self.pooler = Linear(h, h, generator=gen) if add_pooling_layer else None
        _init_like_hf(self, config, gen)
        if 0 <= config.pad_token_id < config.vocab_size:
            self.embeddings.word_embeddings.weight.data[config.pad_token_id] = 0.0  # HF zeroes the [PAD] row

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, output_attentions=False,
                inputs_embeds=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("BertModel.forward: give exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            ids = as_token_ids(input_ids, "BertModel.forward", "input_ids")
            shape = ids.shape
        else:
            ids, shape = None, tuple(inputs_embeds.shape[:2])
            if inputs_embeds.ndim != 3 or inputs_embeds.shape[2] != self.config.hidden_size:
                raise ValueError(f"BertModel.forward: inputs_embeds of shape {tuple(inputs_embeds.shape)} must be "
                                 f"(batch, time, {self.config.hidden_size})")
        if token_type_ids is None:
            types = np.zeros(shape, np.int64)
        else:
            types = as_token_ids(token_type_ids, "BertModel.forward", "token_type_ids")
            if types.shape != shape:
                raise ValueError(f"BertModel.forward: token_type_ids of shape {tuple(types.shape)} must "
                                 f"match the input's {tuple(shape)}")
        mask = masks.padding_mask(attention_mask, shape, "BertModel.forward")   # (B, 1, 1, T) or None
        x = self.embeddings(ids, types, inputs_embeds)                          # (B, T, H)
        attentions = [] if output_attentions else None
        for block in self.blocks:
            if output_attentions:
                x, weights = block(x, mask=mask, need_weights=True)             # (B, T, H), (B, nh, T, T)
                attentions.append(weights)
            else:
                x = block(x, mask=mask)                                         # (B, T, H)
        pooled = self.pooler(x[:, 0]).tanh() if self.pooler is not None else None  # [CLS]: (B, H)
        return BertModelOutput(x, pooled, attentions)

    def load_state_dict(self, state, strict=True):
        """Our state_dict or a Hugging Face BertModel one (names mapped in minilm/models/hf.py)."""
        return super().load_state_dict(hf.bert_state_dict_to_ours(state, self.config), strict=strict)

    @classmethod
    def from_pretrained(cls, folder, add_pooling_layer=None, generator=None):
        """Load config.json + model.safetensors of a Hugging Face BERT (see hf.load_bert_model). Eval mode."""
        return hf.load_bert_model(cls, folder, add_pooling_layer, generator)


class BertForMaskedLM(Module):
    """BERT with the masked-language-modelling head.

    forward(input_ids, attention_mask=None, token_type_ids=None, labels=None)
    returns logits (B, T, V), or (logits, loss) when labels (B, T) are given:
    the mean cross-entropy over positions whose label is not -100.
    The head: logits = transform_norm(GELU(transform(x))) word^T + bias.
    """

    def __init__(self, config, generator=None):
        super().__init__()
        gen = generator if generator is not None else default_generator()
        self.config = config
        h = config.hidden_size
        self.bert = BertModel(config, add_pooling_layer=False, generator=gen)
        self.transform = Linear(h, h, generator=gen)
        self.transform.weight.data[...] = gen.normal(0.0, config.initializer_range, (h, h))
        self.transform.bias.data[...] = 0.0
        self.transform_norm = LayerNorm(h, eps=config.layer_norm_eps)
        self.decoder = Linear(h, config.vocab_size, bias=False, generator=gen)
        self.decoder.weight = self.bert.embeddings.word_embeddings.weight      # tied: one Parameter, (V, H)
        self.bias = Parameter(np.zeros(config.vocab_size, np.float32))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state  # (B, T, H)
        h = self.transform_norm(F.gelu(self.transform(hidden), self.config.gelu_approximate))
        logits = self.decoder(h) + self.bias                                    # (B, T, H) -> (B, T, V)
        if labels is None:
            return logits
        targets = as_token_ids(labels, "BertForMaskedLM.forward", "labels")
        if targets.shape != logits.shape[:2]:
            raise ValueError(f"BertForMaskedLM.forward: labels of shape {tuple(targets.shape)} must match "
                             f"input_ids {logits.shape[:2]}")
        return logits, F.cross_entropy(logits, targets, ignore_index=-100)

    def load_state_dict(self, state, strict=True):
        """Our state_dict or Hugging Face's BertForMaskedLM one (names mapped in minilm/models/hf.py)."""
        return super().load_state_dict(hf.bert_state_dict_to_ours(state, self.config, "bert."), strict=strict)

    @classmethod
    def from_pretrained(cls, folder, generator=None):
        """Load a Hugging Face BertForMaskedLM / BertForPreTraining folder (see hf.load_bert_for_masked_lm)."""
        return hf.load_bert_for_masked_lm(cls, folder, generator)
