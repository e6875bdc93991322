"""Text generation from an autoregressive model: greedy, temperature, top-k, top-p, KV cache.

Generating token t+1 needs the logits at the last position only. Without a
cache the model re-reads the whole prefix every step (O(T^2) attention work
over a sequence, O(T) per step for the projections). With a KV cache
(``model.new_kv_caches()``: one per layer) each step feeds just the newest
token: its query attends to the keys and values already stored.

Streaming: ``generate(..., on_token=f)`` calls ``f(step, next_ids)`` as soon as
each token is chosen, and ``TextStreamer`` turns those ids into text on the
spot, so a reader sees the words as they come (and keeps them after Ctrl-C).
"""
import codecs

import numpy as np

from minilm.autograd.grad_mode import no_grad
from minilm.sampling import sample_next_token
from minilm.tensor import Tensor


@no_grad()
def generate(model, idx, max_new_tokens, *, temperature=1.0, top_k=None, top_p=None, greedy=False,
             eos_id=None, rng=None, use_cache=True, on_token=None):
    """Extend each row of `idx` (B, T) int ids by up to max_new_tokens tokens.

    temperature=0 or greedy=True: always the most likely token.
    eos_id: stop a row when it produces this id (the batch stops when every row has).
    rng: a numpy Generator (seeded for reproducible samples).
    use_cache: feed only the newest token each step, with KV caches.
    on_token: called as on_token(step, next_ids) right after each step, step = 0, 1, ...
        and next_ids the (B,) int64 ids just chosen (e.g. a TextStreamer's put).
    Returns a NumPy int64 array (B, T + generated).
    """
    idx = np.asarray(idx.numpy() if isinstance(idx, Tensor) else idx, dtype=np.int64)
    if idx.ndim == 1:
        idx = idx[None, :]                                              # (T,) -> (1, T)
    if idx.shape[1] == 0:
        raise ValueError("generate: the prompt is empty; give at least one token id")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    rng = rng if rng is not None else np.random.default_rng()
    block = model.config.block_size                                     # the context length
    was_training = model.training
    model.eval()
    greedy = greedy or temperature == 0
    finished = np.zeros(idx.shape[0], dtype=bool)
    caches = None
    try:
        for step in range(max_new_tokens):
            if use_cache and idx.shape[1] <= block:
                if caches is None:
                    caches = model.new_kv_caches()
                    logits = model(idx, kv_caches=caches)               # (B, T, V): fills the caches
                else:
                    logits = model(idx[:, -1:], kv_caches=caches)      # (B, 1, V): newest token only
            else:
                # past the context length positions run out: slide a window, no cache
                logits = model(idx[:, -block:])                         # (B, T, V)
            last = logits.data[:, -1, :]                                # (B, V)
            nxt = np.asarray(sample_next_token(last, rng, temperature=temperature if not greedy else 1.0,
                                               top_k=top_k, top_p=top_p, greedy=greedy)).reshape(-1)
            if eos_id is not None:
                nxt = np.where(finished, eos_id, nxt)
                finished |= nxt == eos_id
            idx = np.concatenate([idx, nxt[:, None].astype(np.int64)], axis=1)
            if on_token is not None:
                on_token(step, idx[:, -1])
            if eos_id is not None and finished.all():
                break
    finally:
        model.train(was_training)
    return idx


class TextStreamer:
    """Write the text of token ids as they arrive: ``put(ids)`` for each new piece, ``end()`` once.

    A byte-level BPE token can hold half of a UTF-8 character (an emoji is 4 bytes,
    often 2 tokens). Its bytes go through an incremental UTF-8 decoder, which holds
    a partial character back until the rest arrives, so the streamed text equals
    ``tokenizer.decode(all_ids)`` exactly. Tokenizers without ``token_bytes`` (one
    character per id) decode each id on its own.
    """

    def __init__(self, tokenizer, write):
        self.tokenizer = tokenizer
        self.write = write                   # e.g. a function printing without a newline and flushing
        by_bytes = hasattr(tokenizer, "token_bytes")
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace") if by_bytes else None

    def put(self, ids):
        for i in np.asarray(ids).reshape(-1).tolist():
            if self._utf8 is not None:
                text = self._utf8.decode(self.tokenizer.token_bytes(i))
            else:
                text = self.tokenizer.decode([i])
            if text:
                self.write(text)

    def end(self):
        """Flush a character left incomplete (it shows as U+FFFD, as decode() would show it)."""
        if self._utf8 is not None:
            text = self._utf8.decode(b"", final=True)
            if text:
                self.write(text)
