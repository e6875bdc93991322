"""Text generation from an autoregressive model: greedy, temperature, top-k, top-p, KV cache.

Generating token t+1 needs the logits at the last position only. Without a
cache the model re-reads the whole prefix every step (O(T^2) attention work
over a sequence, O(T) per step for the projections). With a KV cache
(``model.new_kv_caches()``: one per layer) each step feeds just the newest
token: its query attends to the keys and values already stored.

Streaming: ``generate(..., on_token=f)`` calls ``f(step, next_ids)`` as soon as
each token is chosen, and ``TextStreamer`` turns those ids into text on the
spot, so a reader sees the words as they come (and keeps them after Ctrl-C).

Stop sequences: code completion wants to end at a blank line or at the next
``"\ndef "``, which are text, not token ids: a stop string can span two tokens
and a token can hold more than the stop string. ``StopOnText`` decodes each
row's continuation and marks the row done once a stop string appears in it
(rows stop independently; generation ends when every row is done);
``generate_text`` returns each row's text cut just before its first stop
string, and ``TextStreamer(..., stop=...)`` holds back the last few characters
(one less than the longest stop string) until it knows they do not begin one,
so nothing past a stop is ever printed. (Hugging Face's ``stop_strings`` do
the same job.)

Control: ``banned_tokens=[id, ...]`` and ``logit_bias={id: b}`` are applied to the
logits before every choice (see minilm.sampling): a banned token never appears, a
positive bias makes a token likelier and a negative one rarer. They act on token
ids, one token at a time; a word that is several tokens is not one unit here.
"""
import codecs

import numpy as np

from minilm.autograd.grad_mode import no_grad
from minilm.sampling import logit_controls, sample_next_token
from minilm.tensor import Tensor


@no_grad()
def generate(model, idx, max_new_tokens, *, temperature=1.0, top_k=None, top_p=None, greedy=False,
             eos_id=None, rng=None, use_cache=True, on_token=None, stopping_criteria=None,
             banned_tokens=None, logit_bias=None):
    """Extend each row of `idx` (B, T) int ids by up to max_new_tokens tokens.

    temperature=0 or greedy=True: always the most likely token.
    eos_id: stop a row when it produces this id (the batch stops when every row has).
    rng: a numpy Generator (seeded for reproducible samples).
    use_cache: feed only the newest token each step, with KV caches.
    on_token: called as on_token(step, next_ids) right after each step, step = 0, 1, ...
        and next_ids the (B,) int64 ids just chosen (e.g. a TextStreamer's put).
    stopping_criteria: called as stopping_criteria(idx, step) after on_token, with idx the
        (B, T + step + 1) ids so far; returns a (B,) bool array, True for rows that are done
        (e.g. a StopOnText). Rows once done stay done; the loop ends when all are. Tokens
        are still appended to done rows (the array stays rectangular): cut them afterwards.
    banned_tokens: token ids never generated (greedy picks the best allowed one).
    logit_bias: {token id: bias} added to the logits before temperature, top-k and top-p.
        Both are checked against the model's vocabulary before the first step. eos_id filling
        finished rows is not subject to them.
    Returns a NumPy int64 array (B, T + generated).
    """
    idx = np.asarray(idx.numpy() if isinstance(idx, Tensor) else idx, dtype=np.int64)
    if idx.ndim == 1:
        idx = idx[None, :]                                              # (T,) -> (1, T)
    if idx.shape[1] == 0:
        raise ValueError("generate: the prompt is empty; give at least one token id")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    vocab_size = getattr(model.config, "vocab_size", None)
    if vocab_size is not None:                  # fail before the first forward pass, naming the vocabulary
        logit_controls(vocab_size, banned_tokens, logit_bias, "generate")
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
                                               top_k=top_k, top_p=top_p, greedy=greedy,
                                               banned_tokens=banned_tokens, logit_bias=logit_bias)).reshape(-1)
            if eos_id is not None:
                nxt = np.where(finished, eos_id, nxt)
                finished |= nxt == eos_id
            idx = np.concatenate([idx, nxt[:, None].astype(np.int64)], axis=1)
            if on_token is not None:
                on_token(step, idx[:, -1])
            if stopping_criteria is not None:
                done = np.asarray(stopping_criteria(idx, step), dtype=bool).reshape(-1)
                if done.shape != finished.shape:
                    raise ValueError(f"generate: stopping_criteria returned shape {done.shape}, "
                                     f"expected ({idx.shape[0]},): one flag per row")
                finished |= done
            if (eos_id is not None or stopping_criteria is not None) and finished.all():
                break
    finally:
        model.train(was_training)
    return idx


def _check_stop(stop, where):
    """A tuple of non-empty stop strings (a single string is one stop string)."""
    if stop is None:
        return ()
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    for s in stop:
        if not isinstance(s, str) or not s:
            raise ValueError(f"{where}: stop strings must be non-empty str, got {s!r}")
    return stop


def find_stop(text, stop):
    """The index of the earliest stop string in ``text``, or -1 when there is none."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else -1


class StopOnText:
    """A stopping criterion for ``generate``: a row is done once its continuation contains a stop string.

    The continuation (the ids after the first ``prompt_len``) is decoded as a whole each
    step, so a stop string spread over several tokens, or inside one longer token, is
    found all the same. ``cut(text)`` removes the first stop string and what follows it.
    """

    def __init__(self, tokenizer, stop, prompt_len):
        self.tokenizer = tokenizer
        self.stop = _check_stop(stop, "StopOnText")
        self.prompt_len = int(prompt_len)

    def texts(self, idx):
        """The decoded continuation of every row of idx (B, T)."""
        return [self.tokenizer.decode(row[self.prompt_len:].tolist()) for row in np.asarray(idx)]

    def __call__(self, idx, step):
        return np.array([find_stop(t, self.stop) >= 0 for t in self.texts(idx)], dtype=bool)   # (B,)

    def cut(self, text):
        i = find_stop(text, self.stop)
        return text if i < 0 else text[:i]


def generate_text(model, tokenizer, prompt, max_new_tokens, *, stop=(), on_text=None, **sampling):
    """Continue ``prompt`` (a str, or a list of str that encode to the same number of tokens) as text.

    stop: stop strings (e.g. ("\\n\\n", "\\ndef ")); each row ends at its first one, which is
        not included in the returned text. Rows stop independently.
    on_text: for one prompt, called with each new piece of text as it is generated (never
        text at or past a stop string).
    sampling: generate()'s keyword arguments (temperature, top_k, top_p, greedy, rng, use_cache, eos_id,
        banned_tokens, logit_bias).
    Returns the continuation (without the prompt): a str for a str prompt, else a list of str.
    """
    single = isinstance(prompt, str)
    prompts = [prompt] if single else list(prompt)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("generate_text: prompt must be a str or a non-empty list of str")
    rows = [tokenizer.encode(p) for p in prompts]
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"generate_text: the prompts encode to different lengths {sorted({len(r) for r in rows})}; "
                         "batched rows must have the same number of tokens (there is no padding)")
    if on_text is not None and len(rows) != 1:
        raise ValueError("generate_text: on_text streams one prompt; pass a single prompt")
    criterion = StopOnText(tokenizer, stop, len(rows[0]))
    on_token, streamer = None, None
    if on_text is not None:
        streamer = TextStreamer(tokenizer, on_text, stop=criterion.stop)
        on_token = lambda step, ids: streamer.put(ids)                     # noqa: E731
    try:
        out = generate(model, np.array(rows, dtype=np.int64), max_new_tokens, on_token=on_token,
                       stopping_criteria=criterion if criterion.stop else None, **sampling)
    finally:
        if streamer is not None:
            streamer.end()
    texts = [criterion.cut(t) for t in criterion.texts(out)]
    return texts[0] if single else texts


class TextStreamer:
    """Write the text of token ids as they arrive: ``put(ids)`` for each new piece, ``end()`` once.

    A byte-level BPE token can hold half of a UTF-8 character (an emoji is 4 bytes,
    often 2 tokens). Its bytes go through an incremental UTF-8 decoder, which holds
    a partial character back until the rest arrives, so the streamed text equals
    ``tokenizer.decode(all_ids)`` exactly. Tokenizers without ``token_bytes`` (one
    character per id) decode each id on its own.

    stop: stop strings. The streamer then writes only the text before the first stop
    string, holding back the last len(longest stop) - 1 characters until it is sure they
    do not begin one; ``stopped`` turns True when a stop string has been seen. Without
    stop strings nothing is held back.
    """

    def __init__(self, tokenizer, write, stop=()):
        self.tokenizer = tokenizer
        self.write = write                   # e.g. a function printing without a newline and flushing
        by_bytes = hasattr(tokenizer, "token_bytes")
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace") if by_bytes else None
        self.stop = _check_stop(stop, "TextStreamer")
        self._hold = max((len(s) for s in self.stop), default=1) - 1   # chars that may begin a stop string
        self._pending = ""                   # text decoded but not yet written
        self.stopped = False

    def _emit(self, text, final=False):
        if self.stopped:
            return
        if not self.stop:
            if text:
                self.write(text)
            return
        self._pending += text
        i = find_stop(self._pending, self.stop)
        if i >= 0:
            ready, self._pending, self.stopped = self._pending[:i], "", True
        elif final:
            ready, self._pending = self._pending, ""
        else:
            keep = len(self._pending) - self._hold
            ready, self._pending = self._pending[:max(keep, 0)], self._pending[max(keep, 0):]
        if ready:
            self.write(ready)

    def put(self, ids):
        for i in np.asarray(ids).reshape(-1).tolist():
            if self._utf8 is not None:
                text = self._utf8.decode(self.tokenizer.token_bytes(i))
            else:
                text = self.tokenizer.decode([i])
            self._emit(text)

    def end(self):
        """Flush a character left incomplete (it shows as U+FFFD, as decode() would show it) and
        the held-back tail (no stop string came)."""
        text = self._utf8.decode(b"", final=True) if self._utf8 is not None else ""
        self._emit(text, final=True)
