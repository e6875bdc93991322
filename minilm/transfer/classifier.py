"""A pretrained encoder with a classification head: the model every transfer method trains.

    h = encoder(tokens)                         (B, T, H) last hidden states
    e = sum_t m_t h_t / sum_t m_t               masked mean over the text's tokens (as MiniLM was trained)
    logits = W dropout(e) + b                   (B, num_classes)

What trains is the method's choice (minilm/transfer/methods.py): only the head (feature
extraction), the last k blocks too (partial fine-tuning), everything (full fine-tuning), LoRA
adapters (minilm/transfer/lora.py) or a soft prompt (below).

Prompt tuning (Lester et al. 2021) keeps the whole encoder frozen and learns n input vectors
P (n, H) that are spliced in right after [CLS], where word embeddings would be:

    tokens:       [CLS]  p_1 ... p_n  w_1 ... w_T'  [SEP]  [PAD] ...
    attention:      1     1  ...  1    1  ...  1      1      0        the prompt is seen by every token
    pooling:        1     0  ...  0    1  ...  1      1      0        e averages the text's tokens only

Position and token-type embeddings are added to the prompt as to any token.
"""
import numpy as np

from minilm.nn.layers import Dropout, Linear
from minilm.nn.module import Module, Parameter
from minilm.random import default_generator
from minilm.tensor_functions import cat

FIRST_WORD_ID = 1000     # BERT's uncased vocabulary: ids below this are [PAD], [unused*] and the specials


class SoftPrompt(Module):
    """n trainable vectors of the encoder's width, initialised as the embeddings of n random
    vocabulary words (Lester et al. found that better than random vectors)."""

    def __init__(self, n_tokens, word_embeddings, generator=None):
        super().__init__()
        if n_tokens < 1:
            raise ValueError(f"SoftPrompt: n_tokens must be >= 1, got {n_tokens}")
        gen = generator if generator is not None else default_generator()
        table = word_embeddings.weight.data
        first = FIRST_WORD_ID if table.shape[0] > 2 * FIRST_WORD_ID else 0
        rows = gen.choice(np.arange(first, table.shape[0]), size=n_tokens, replace=False)
        self.n_tokens = int(n_tokens)
        self.weight = Parameter(table[rows].copy())                             # (n, H)

    def extra_repr(self):
        return f"n_tokens={self.n_tokens}"


def masked_mean(hidden, mask):
    """(B, T, H) Tensor, (B, T) 0/1 array -> (B, H): the mean over positions where mask is 1."""
    m = np.asarray(mask, dtype=hidden.dtype)
    counts = np.maximum(m.sum(axis=1, keepdims=True), 1.0)                      # (B, 1): no 0 / 0
    return (hidden * (m / counts)[..., None]).sum(axis=1)                       # weights sum to 1 per row


class SequenceClassifier(Module):
    """SequenceClassifier(encoder, num_classes, dropout=0.1, prompt_tokens=0, generator=None).

    forward(input_ids, attention_mask) -> logits (B, num_classes). `encoder` is a BertModel
    (for example all-MiniLM-L6-v2); prompt_tokens > 0 adds a SoftPrompt of that many vectors.
    """

    def __init__(self, encoder, num_classes, dropout=0.1, prompt_tokens=0, generator=None):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"SequenceClassifier: num_classes must be >= 2, got {num_classes}")
        gen = generator if generator is not None else default_generator()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.prompt = (SoftPrompt(prompt_tokens, encoder.embeddings.word_embeddings, gen)
                       if prompt_tokens else None)
        self.dropout = Dropout(dropout, gen)
        self.head = Linear(hidden, num_classes, generator=gen)

    def features(self, input_ids, attention_mask):
        """The pooled text vectors e (B, H), before dropout and the head."""
        ids = np.asarray(input_ids)
        mask = np.asarray(attention_mask)
        if self.prompt is None:
            hidden = self.encoder(ids, attention_mask=mask).last_hidden_state
            return masked_mean(hidden, mask)
        b, n = ids.shape[0], self.prompt.n_tokens
        words = self.encoder.embeddings.word_embeddings(ids)                    # (B, T, H)
        prompt = self.prompt.weight + np.zeros((b, 1, 1), words.dtype)          # broadcast to (B, n, H)
        embeds = cat([words[:, :1], prompt, words[:, 1:]], axis=1)              # (B, 1 + n + T - 1, H)
        ones, zeros = np.ones((b, n), mask.dtype), np.zeros((b, n), mask.dtype)
        attend = np.concatenate([mask[:, :1], ones, mask[:, 1:]], axis=1)       # everyone sees the prompt
        pool = np.concatenate([mask[:, :1], zeros, mask[:, 1:]], axis=1)        # the mean skips it
        hidden = self.encoder(inputs_embeds=embeds, attention_mask=attend).last_hidden_state
        return masked_mean(hidden, pool)

    def forward(self, input_ids, attention_mask):
        return self.head(self.dropout(self.features(input_ids, attention_mask)))

    def trainable_parameters(self):
        """(name, parameter) pairs with requires_grad: what the method trains."""
        return [(name, p) for name, p in self.named_parameters() if p.requires_grad]


def count_parameters(model, trainable_only=False):
    """Number of parameter elements (a tied Parameter counts once: named_parameters yields it once)."""
    return sum(int(p.data.size) for _, p in model.named_parameters() if p.requires_grad or not trainable_only)


__all__ = ["SequenceClassifier", "SoftPrompt", "masked_mean", "count_parameters"]
