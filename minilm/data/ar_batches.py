"""Batches for autoregressive (GPT-style) language modelling.

The objective: given tokens t_0 .. t_{T-1}, predict t_1 .. t_T, i.e. maximise
sum_i log p(t_{i+1} | t_0 .. t_i) (Radford et al. 2018, "Improving Language
Understanding by Generative Pre-Training", eq. 1). One window of T + 1
consecutive tokens gives a whole training example: the inputs are its first T
tokens and the targets are the same window shifted left by one::

    window = [t0 t1 t2 t3 t4]           (T + 1 = 5 tokens)
    x      = [t0 t1 t2 t3]
    y      = [t1 t2 t3 t4]              y[i] is the token that follows x[i]

Training samples windows at random start positions (with replacement, so an
"epoch" is only a rough notion); evaluation walks the validation array in order
with non-overlapping windows, so every run scores the same tokens.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

__all__ = ["ARBatcher", "iter_eval_batches"]


def _check_tokens(tokens: Any, seq_len: int, batch_size: int, where: str) -> np.ndarray:
    if not isinstance(seq_len, (int, np.integer)) or isinstance(seq_len, bool) or seq_len < 1:
        raise ValueError(f"{where}: seq_len must be a positive int, got {seq_len!r}")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"{where}: batch_size must be a positive int, got {batch_size!r}")
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"{where}: tokens must be a 1-D array of ids, got shape {tokens.shape}")
    if tokens.size == 0:
        raise ValueError(f"{where}: the token array is empty (did the corpus load, and does the tokenizer emit ids?)")
    if tokens.dtype.kind not in "iu":
        raise TypeError(f"{where}: tokens must be integer ids, got dtype {tokens.dtype}")
    if tokens.size < seq_len + 1:
        raise ValueError(
            f"{where}: corpus too short: {tokens.size} tokens, but one window needs seq_len + 1 = {seq_len + 1}; "
            "use a shorter seq_len or more text"
        )
    return tokens


class ARBatcher:
    """Random windows of ``seq_len + 1`` tokens -> (x, y), both int64 of shape (batch_size, seq_len).

    ``rng`` is used (and advanced) by ``next_batch``; ``state_dict()`` captures
    its state so a resumed run draws exactly the batches the interrupted run would have.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, rng: np.random.Generator):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"ARBatcher: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self.tokens = _check_tokens(tokens, seq_len, batch_size, "ARBatcher")
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.rng = rng
        self._offsets = np.arange(self.seq_len + 1)  # (T+1,)

    @property
    def num_windows(self) -> int:
        """How many distinct start positions there are."""
        return self.tokens.size - self.seq_len

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        starts = self.rng.integers(0, self.num_windows, size=self.batch_size)  # (B,)
        windows = self.tokens[starts[:, None] + self._offsets].astype(np.int64)  # (B,) -> (B, T+1)
        return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able dict: the RNG state plus the sizes it is only valid for."""
        return {
            "rng": self.rng.bit_generator.state,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "num_tokens": int(self.tokens.size),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the RNG (in place: the Generator passed at construction) from ``state_dict()``."""
        if not isinstance(state, dict) or "rng" not in state:
            raise ValueError("ARBatcher.load_state_dict: expected a dict from ARBatcher.state_dict() with an 'rng' entry")
        current = self.state_dict()
        for key in ("seq_len", "batch_size", "num_tokens"):
            mine = current[key]
            if state.get(key) != mine:
                raise ValueError(
                    f"ARBatcher.load_state_dict: saved {key}={state.get(key)} but this batcher has {key}={mine}; "
                    "the batches would not continue the saved run (make a new batcher to change sizes)"
                )
        rng_state = state["rng"]
        kind = type(self.rng.bit_generator).__name__
        if rng_state.get("bit_generator") != kind:
            raise ValueError(f"ARBatcher.load_state_dict: saved a {rng_state.get('bit_generator')} state, but rng is {kind}")
        self.rng.bit_generator.state = rng_state


def iter_eval_batches(
    tokens: np.ndarray, seq_len: int, batch_size: int, max_batches: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Deterministic (x, y) int64 batches over ``tokens`` in order, for validation.

    Window k covers tokens[k*T : k*T + T + 1] (T = seq_len), so windows share
    one boundary token and every token after the first is a target exactly once,
    up to the last (len - 1) % T tokens, which do not fill a window and are not
    scored. The last batch may hold fewer than ``batch_size`` windows.
    ``max_batches`` evaluates only max_batches * batch_size windows, spread
    evenly over the whole split (always the same ones): the first windows alone
    would measure one stretch of the text (in pydoc, the first 20 batches read
    0.13 nats harder than the whole split).
    """
    tokens = _check_tokens(tokens, seq_len, batch_size, "iter_eval_batches")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"iter_eval_batches: max_batches must be >= 1 or None, got {max_batches}")
    n_windows = (tokens.size - 1) // seq_len
    chosen = np.arange(n_windows)  # window numbers
    if max_batches is not None and max_batches * batch_size < n_windows:
        chosen = np.linspace(0, n_windows - 1, max_batches * batch_size).round().astype(np.int64)
    offsets = np.arange(seq_len + 1)  # (T+1,)
    for first in range(0, len(chosen), batch_size):
        starts = chosen[first:first + batch_size] * seq_len  # (b,)
        windows = tokens[starts[:, None] + offsets].astype(np.int64)  # (b,) -> (b, T+1)
        yield windows[:, :-1], windows[:, 1:]  # (b, T), (b, T)
