"""Looking inside a trained Transformer: its attention maps and the logit lens.

Attention maps. Every head of every layer computes, for each query position i,
a probability distribution over the key positions j it may see,

    A[l, h, i, :] = softmax(q_i k_j^T / sqrt(d))            (Vaswani et al. 2017, eq. 1)

(for a GPT only j <= i: the causal mask). `trace` runs the model once with
each block's `need_weights=True` path and keeps all of them, (L, H, T, T).
What a head attends to is a hint about what it does (a head that always looks
one token back, one that looks at the last newline ...), not a proof: the value
vectors and everything after the head decide what the attended tokens
contribute (Jain & Wallace 2019, "Attention is not Explanation").

The logit lens (nostalgebraist 2020, "interpreting GPT: the logit lens").
A pre-LN GPT only ever *adds* to its residual stream, x_l = x_{l-1} + block_l(...),
and reads its prediction off the end with the final LayerNorm and the LM head.
Applying that same read-out to the stream after every block,

    logits_l = LayerNorm_f(x_l) W_head^T        l = 0 (the embeddings), 1, ..., L

shows what the model "would predict" if it stopped after block l. The last
one is the model's own output. Its cross-entropy against the real next
tokens, per layer, measures how much each block adds; the top tokens per
position show *where* a prediction forms. The read-out was trained for the
last layer only, so early layers can look worse than they are (the tuned
lens, Belrose et al. 2023, fits one affine map per layer to correct that).
For a BERT the same idea applies its masked-LM head to each layer's output:
"which token would go here", not "which comes next".
"""
from dataclasses import dataclass

import numpy as np

from minilm.autograd import no_grad
from minilm.models import GPT, BertForMaskedLM
from minilm.models._inputs import check_id_range
from minilm.models.bert import BertModel
from minilm.nn import functional as F


@dataclass
class Trace:
    """One forward pass of one token sequence, with everything the views need (NumPy arrays).

    ids (T,); attentions (L, H, T, T): A[l, h, i, j] = how much query i attends to key j;
    hidden (L + 1, T, C): the residual stream after the embeddings and after each block;
    lens_logits (L + 1, T, V): the model's read-out applied to each of them (the logit lens;
    None for a BertModel without a head); causal: a GPT (position i sees j <= i only).
    """
    ids: np.ndarray
    attentions: np.ndarray
    hidden: np.ndarray
    lens_logits: np.ndarray
    causal: bool

    @property
    def logits(self):
        """The model's own output logits (T, V): the logit lens at the last layer."""
        return self.lens_logits[-1]


def _model_kind(model):
    if isinstance(model, GPT):
        return "gpt"
    if isinstance(model, (BertForMaskedLM, BertModel)):
        return "bert"
    raise TypeError(f"interpret: expected a GPT, BertForMaskedLM or BertModel, got {type(model).__name__}")


def _as_batch(ids, where):
    a = np.asarray(ids)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] == 0 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{where}: expected a non-empty sequence of token ids (T,) or (B, T), "
                         f"got an array of shape {a.shape} and dtype {a.dtype}")
    return a.astype(np.int64)


def _numpy(t):
    return np.asarray(t.numpy())


def _bert_head(model, h):
    """BertForMaskedLM's head on hidden states h (B, T, H) -> logits (B, T, V)."""
    z = model.transform_norm(F.gelu(model.transform(h), model.config.gelu_approximate))
    return model.decoder(z) + model.bias


def _run(model, ids):
    """(attentions [L x (B, H, T, T)], hidden [L+1 x (B, T, C)], logits per stream or None), as Tensors.

    The same modules in the same order as the model's own forward (GPT.forward, BertModel.forward),
    with each block asked for its attention probabilities; tests check that the last read-out
    equals the model's output, so the two cannot drift apart unnoticed.
    """
    kind = _model_kind(model)
    b, t = ids.shape
    if kind == "gpt":
        if t > model.config.block_size:
            raise ValueError(f"interpret: {t} tokens exceed the model's context of {model.config.block_size}")
        check_id_range(ids, model.config.vocab_size, "interpret.trace", "ids")
        x = model.drop(model.wte(ids) + model.wpe(np.arange(t)))                 # (B, T, C)
        blocks, read_out = model.blocks, lambda h: model.lm_head(model.ln_f(h))
    else:
        bert = model.bert if isinstance(model, BertForMaskedLM) else model
        x = bert.embeddings(ids, np.zeros_like(ids))                             # checks the length
        blocks = bert.blocks
        read_out = (lambda h: _bert_head(model, h)) if isinstance(model, BertForMaskedLM) else None
    hidden, attentions = [x], []
    for block in blocks:
        x, weights = block(x, need_weights=True)                                 # (B, T, C), (B, H, T, T)
        hidden.append(x)
        attentions.append(weights)
    logits = None if read_out is None else [read_out(h) for h in hidden]        # L+1 x (B, T, V)
    return attentions, hidden, logits


def trace_batch(model, ids):
    """Trace of a batch (B, T) of equal-length sequences, in eval mode (no dropout), without gradients:
    (attentions (L, B, H, T, T), hidden (L+1, B, T, C), lens_logits (L+1, B, T, V) or None)."""
    ids = _as_batch(ids, "interpret.trace")
    _model_kind(model)                                                           # a model we can trace?
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            attentions, hidden, logits = _run(model, ids)
            attentions = np.stack([_numpy(a) for a in attentions])
            hidden = np.stack([_numpy(h) for h in hidden])
            logits = None if logits is None else np.stack([_numpy(z) for z in logits])
    finally:
        model.train(was_training)
    return attentions, hidden, logits


def trace(model, ids):
    """Trace of one token sequence (T,): attentions, residual stream and logit lens (see Trace)."""
    ids = _as_batch(ids, "interpret.trace")
    if ids.shape[0] != 1:
        raise ValueError(f"interpret.trace: one sequence at a time, got a batch of {ids.shape[0]} "
                         f"(use trace_batch)")
    attentions, hidden, logits = trace_batch(model, ids)
    return Trace(ids=ids[0], attentions=attentions[:, 0], hidden=hidden[:, 0],
                 lens_logits=None if logits is None else logits[:, 0], causal=_model_kind(model) == "gpt")


def attention_maps(model, ids):
    """Every layer's and head's attention probabilities for one sequence: (L, H, T, T)."""
    return trace(model, ids).attentions


def logit_lens(model, ids):
    """The logit lens for one sequence: (L + 1, T, V), layer 0 = the embeddings, the last = the model's logits."""
    return trace(model, ids).lens_logits


def log_softmax(logits):
    """log softmax over the last axis, in float64 (stable: the max is subtracted first)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def lens_losses(model, batches):
    """Mean next-token cross-entropy (nats) of the logit lens at every layer over (x, y) batches: (L + 1,).

    batches: (x, y) int arrays (B, T) with y[b, t] the token after x[b, :t + 1] (a GPT's validation
    batches, e.g. minilm.data.iter_eval_batches). The last entry is the model's own validation loss.
    """
    if _model_kind(model) != "gpt":
        raise ValueError("lens_losses: the next-token loss needs a GPT")
    total, count = None, 0
    for x, y in batches:
        _, _, logits = trace_batch(model, x)                                     # (L+1, B, T, V)
        y = np.asarray(y, np.int64)
        if y.shape != logits.shape[1:3]:
            raise ValueError(f"lens_losses: targets of shape {y.shape} must match inputs {logits.shape[1:3]}")
        logp = log_softmax(logits)
        picked = np.take_along_axis(logp, y[None, :, :, None], axis=-1)[..., 0]  # (L+1, B, T)
        nll = -picked.reshape(len(logits), -1).sum(axis=1)
        total = nll if total is None else total + nll
        count += y.size
    if count == 0:
        raise ValueError("lens_losses: no batches")
    return total / count


def token_strings(tokenizer, ids):
    """The text of each token on its own: a BPE token's bytes (\\xNN where not whole UTF-8), a character."""
    if hasattr(tokenizer, "id_to_token"):
        return [tokenizer.id_to_token(int(i)) for i in ids]
    return [tokenizer.decode([int(i)]) for i in ids]


def top_k(lens_logits, k=3):
    """(ids (L+1, T, k), probabilities (L+1, T, k)): each layer's k most likely tokens per position."""
    p = np.exp(log_softmax(lens_logits))
    order = np.argsort(-p, axis=-1, kind="stable")[..., :k]
    return order, np.take_along_axis(p, order, axis=-1)


_VISIBLE = {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "\u2423"}


def show_token(s):
    """A token as it reads in a table: newline, tab, space and other invisible characters (U+2028 would
    even break the line) made visible."""
    return "".join(_VISIBLE.get(c) or (c if c.isprintable() else f"\\u{ord(c):04x}") for c in s)


def format_lens_table(tokens, lens_logits, tokenizer, next_tokens=True, width=6):
    """A text table: one row per layer, one column per position, the lens's most likely token there.

    tokens: the input token strings; next_tokens: the lens predicts the next token (GPT), so the
    header shows each input token and the last row can be compared with the token to its right.
    """
    ids, probs = top_k(lens_logits, 1)
    layers = ["embed"] + [f"layer {l}" for l in range(len(lens_logits) - 1)]
    rows = [list(tokens)] + [token_strings(tokenizer, row) for row in ids[:, :, 0]]
    width = min(width, 1 + max(len(show_token(s)) for row in rows for s in row))   # columns as narrow as they can be
    cell = lambda s: show_token(s)[:width - 1].ljust(width)
    lines = []
    for name, row in zip(["input"] + layers, rows):
        lines.append((name.ljust(9) + "".join(cell(s) for s in row)).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    what = "next token" if next_tokens else "token at each position"
    lines.append(f"(most likely {what} per layer; mean top-1 probability at the last layer "
                 f"{probs[-1, :, 0].mean():.2f})")
    return "\n".join(lines)
