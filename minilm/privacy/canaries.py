"""Canaries and exposure: measuring how much a language model memorised a secret.

Carlini, Liu, Erlingsson, Kos & Song 2019, "The Secret Sharer: Evaluating and
Testing Unintended Memorization in Neural Networks" (USENIX Security): plant a
random secret of a known format in the training text, e.g.

    "\\nMaria's PIN is 48192\\n"      (a canary: prefix "Maria's PIN is ", secret "48192")

train, then ask how the model ranks the true secret among ALL candidates of
its format (here the 10^k strings of k digits) by log-likelihood
log P(secret | "\\n" + prefix). With rank 1 = the most likely candidate,

    exposure = log2(number of candidates) - log2(rank).

A model that learnt nothing about the canary ranks it uniformly at random
(expected exposure about 1.4 bits, whatever the format); one that memorised
it ranks it first, exposure log2(10^k) (16.6 bits for k = 5). Exposure is the
number of bits of the secret the model gives away to someone who guesses in
its order.

Exact rank, not an estimate: the log-likelihood of every candidate is
computed. The candidates form a digit trie: the distribution of digit d+1
depends on the d digits before it, so level d of the trie needs 10^d model
calls, sum_{d<k} 10^d in all ((10^k - 1) / 9 instead of 10^k full sequences).
The shared context ("\\n" + prefix) runs once and its keys and values are
reused from a KV cache by every row, so a row only feeds its own d digits.
We use k = 5 digits in the benchmark (11,111 contexts per canary, a second or
two on a CPU); `brute_force_logprobs` scores every full candidate sequence
separately and is the reference the trie is tested against.

Planting (`plant`): the training text is cut into windows of `window`
characters, the examples of training (and the unit DP-SGD protects). Each
copy of a canary overwrites a random stretch of its own, randomly chosen
window, so a canary planted n times is in exactly n examples and is never
cut in half by a window boundary.
"""
from dataclasses import dataclass

import numpy as np

from minilm.autograd.grad_mode import no_grad
from minilm.nn.attention import KVCache

DIGITS = "0123456789"
NAMES = ("Maria", "Ahmed", "Yuki", "Olga", "Pedro", "Amara", "Lars", "Mei", "Tomas", "Priya", "Kofi", "Ines",
         "Sven", "Leila", "Ravi", "Hana", "Nils", "Zara", "Omar", "Elif")


@dataclass(frozen=True)
class Canary:
    """prefix + secret, e.g. "Maria's PIN is " + "48192"; the secret is k random digits."""

    prefix: str
    secret: str

    @property
    def text(self):
        return self.prefix + self.secret

    @property
    def line(self):
        """What is planted: the canary on a line of its own."""
        return "\n" + self.text + "\n"

    @property
    def context(self):
        """What the secret is scored after: the same newline + prefix it was planted with."""
        return "\n" + self.prefix


def make_canaries(count, n_digits, generator, names=NAMES):
    """`count` canaries "<name>'s PIN is <n_digits random digits>", each with its own name.

    Distinct names keep the secrets apart: the model must tie each secret to its own prefix.
    """
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"make_canaries: generator must be a numpy.random.Generator, got {type(generator).__name__}")
    if not 1 <= n_digits <= 9:
        raise ValueError(f"make_canaries: n_digits must be in 1..9 (10^n_digits candidates), got {n_digits}")
    if not 1 <= count <= len(names):
        raise ValueError(f"make_canaries: count must be in 1..{len(names)} (one name each), got {count}")
    chosen = generator.permutation(len(names))[:count]
    return [Canary(f"{names[i]}'s PIN is ", "".join(DIGITS[d] for d in generator.integers(0, 10, n_digits)))
            for i in chosen]


def plant(text, canaries, counts, window, generator):
    """Copy canary i into counts[i] distinct random windows of `window` characters of `text`.

    Returns (planted text of the same length, [(canary index, window index, offset), ...]).
    The text's last partial window is never used; no two copies share a window.
    """
    if len(canaries) != len(counts):
        raise ValueError(f"plant: {len(canaries)} canaries but {len(counts)} counts")
    if any(int(c) != c or c < 0 for c in counts):
        raise ValueError(f"plant: counts must be non-negative ints, got {counts}")
    n_windows = len(text) // window
    total = int(sum(counts))
    if total > n_windows:
        raise ValueError(f"plant: {total} copies need as many windows, but the text has only {n_windows} "
                         f"windows of {window} characters")
    longest = max((len(c.line) for c in canaries), default=0)
    if longest > window:
        raise ValueError(f"plant: a canary line of {longest} characters does not fit in a window of {window}")
    slots = generator.choice(n_windows, size=total, replace=False)
    chars = list(text)
    placed, k = [], 0
    for i, (canary, count) in enumerate(zip(canaries, counts)):
        for _ in range(int(count)):
            w = int(slots[k])
            k += 1
            offset = int(generator.integers(0, window - len(canary.line) + 1))
            start = w * window + offset
            chars[start:start + len(canary.line)] = canary.line
            placed.append((i, w, offset))
    return "".join(chars), placed


def _log_softmax_rows(logits):
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _digit_ids(tokenizer):
    ids = tokenizer.encode(DIGITS)
    if len(ids) != 10:
        raise ValueError(f"candidate_logprobs: the tokenizer must give one token per digit, got {len(ids)} "
                         f"tokens for {DIGITS!r} (use a character-level tokenizer)")
    return np.asarray(ids, dtype=np.int64)


def _context_ids(model, tokenizer, context, n_digits):
    ids = np.asarray(tokenizer.encode(context), dtype=np.int64)
    if len(ids) == 0:
        raise ValueError("candidate_logprobs: the context must not be empty (use the canary's '\\n' + prefix)")
    if len(ids) + n_digits > model.config.block_size:
        raise ValueError(f"candidate_logprobs: context of {len(ids)} tokens + {n_digits} digits exceeds the "
                         f"model's block_size {model.config.block_size}")
    return ids


def candidate_logprobs(model, tokenizer, context, n_digits, chunk=4096):
    """log P(c | context) for every c of n_digits digits: array (10^n_digits,), index = int(c).

    Walks the digit trie level by level (see the module docstring); exact, not sampled.
    model: a GPT (anything with forward(idx, kv_caches=...), new_kv_caches(), config.block_size).
    """
    ctx = _context_ids(model, tokenizer, context, n_digits)
    digits = _digit_ids(tokenizer)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            caches = model.new_kv_caches()
            first = model(ctx[None, :], kv_caches=caches).data[0, -1]        # (V,)
            total = _log_softmax_rows(first)[digits]                          # level 1: (10,)
            for depth in range(1, n_digits):
                rows = 10 ** depth                                            # every prefix of `depth` digits
                prefix_digits = (np.arange(rows)[:, None] // 10 ** np.arange(depth - 1, -1, -1)) % 10
                nxt = np.empty((rows, 10))
                for start in range(0, rows, chunk):
                    block = prefix_digits[start:start + chunk]
                    tiled = [_tile_cache(c, len(block)) for c in caches]
                    logits = model(digits[block], kv_caches=tiled).data[:, -1]   # (n, V)
                    nxt[start:start + len(block)] = _log_softmax_rows(logits)[:, digits]
                total = (total[:, None] + nxt).reshape(-1)                    # child r*10 + j
    finally:
        model.train(was_training)
    return total


def _tile_cache(cache, n):
    """A copy of a batch-1 KV cache repeated for n rows (each row appends its own digits)."""
    tiled = KVCache(cache.max_len)
    tiled.k = np.repeat(cache.k, n, axis=0)
    tiled.v = np.repeat(cache.v, n, axis=0)
    tiled.length = cache.length
    return tiled


def brute_force_logprobs(model, tokenizer, context, n_digits, chunk=1024):
    """The reference for candidate_logprobs: every full sequence context + c scored on its own."""
    ctx = _context_ids(model, tokenizer, context, n_digits)
    digits = _digit_ids(tokenizer)
    n = 10 ** n_digits
    cand = (np.arange(n)[:, None] // 10 ** np.arange(n_digits - 1, -1, -1)) % 10   # (n, k) digit values
    seqs = np.concatenate([np.broadcast_to(ctx, (n, len(ctx))), digits[cand]], axis=1)
    out = np.empty(n)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for start in range(0, n, chunk):
                s = seqs[start:start + chunk]
                lp = _log_softmax_rows(model(s[:, :-1]).data)                 # (m, L-1, V)
                pos = np.arange(len(ctx) - 1, s.shape[1] - 1)                 # positions predicting digits
                picked = np.take_along_axis(lp[:, pos], s[:, pos + 1][..., None], axis=-1)[..., 0]
                out[start:start + len(s)] = picked.sum(axis=1)
    finally:
        model.train(was_training)
    return out


def rank_of(logprobs, secret):
    """1 + the number of candidates strictly more likely than the secret (1 = the model's first guess)."""
    if not (isinstance(secret, str) and secret.isdigit() and 10 ** len(secret) == len(logprobs)):
        raise ValueError(f"rank_of: secret {secret!r} must be {round(np.log10(max(len(logprobs), 1)))} "
                         f"digits to index {len(logprobs)} candidates")
    return 1 + int(np.sum(logprobs > logprobs[int(secret)]))


def exposure(rank, n_candidates):
    """log2(|candidates|) - log2(rank) in bits (Carlini et al. 2019, Definition 3)."""
    if not 1 <= rank <= n_candidates:
        raise ValueError(f"exposure: rank must be in 1..{n_candidates}, got {rank}")
    return float(np.log2(n_candidates) - np.log2(rank))


def canary_exposure(model, tokenizer, canary, chunk=4096):
    """{"rank", "exposure", "logprob"} of one canary, by the exact trie ranking."""
    lp = candidate_logprobs(model, tokenizer, canary.context, len(canary.secret), chunk)
    r = rank_of(lp, canary.secret)
    return {"rank": r, "exposure": exposure(r, len(lp)), "logprob": float(lp[int(canary.secret)])}
