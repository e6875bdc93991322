"""BERT's masked-language-model corruption (Devlin et al. 2019, "BERT", section 3.1, "Task #1: Masked LM").

For every position i that is not special (not [CLS], [SEP], [PAD], ...):

    chosen_i ~ Bernoulli(mask_prob)                        (15% by default)
    if chosen_i:  with prob 0.8  input_i = [MASK]
                  with prob 0.1  input_i = a random token   (from ``random_token_ids``)
                  with prob 0.1  input_i = the original token (kept)
    label_i = original token if chosen_i else ignore_index

The loss is cross-entropy at the chosen positions only (ignore_index = -100 is
what ``F.cross_entropy(..., ignore_index=-100)`` skips). Replacing a chosen token
with a random one or keeping it means the model cannot tell which inputs are
real, so it has to build a good representation of every token.

Two details, and what we chose:

* Each non-special token is chosen *independently* with probability
  ``mask_prob`` (as Hugging Face's ``DataCollatorForLanguageModeling`` does),
  so a sequence gets about, not exactly, 15% of its tokens chosen. The original
  BERT data script picks exactly round(15% x length) per sequence.
* Random replacements are drawn uniformly from ``random_token_ids``, by default
  every id in [0, vocab_size) except the special ids and [MASK]; Hugging Face
  draws from the whole vocabulary, specials included.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["mask_tokens", "default_random_token_ids"]


def default_random_token_ids(vocab_size: int, special_ids: Iterable[int], mask_token_id: int) -> np.ndarray:
    """Every id in [0, vocab_size) that is neither special nor the mask id (int64, sorted)."""
    excluded = np.asarray([*special_ids, mask_token_id], dtype=np.int64)
    return np.setdiff1d(np.arange(vocab_size, dtype=np.int64), excluded)


def mask_tokens(
    ids: np.ndarray,
    rng: np.random.Generator,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Iterable[int] | np.ndarray = (),
    mask_prob: float = 0.15,
    random_token_ids: Iterable[int] | np.ndarray | None = None,
    ignore_index: int = -100,
) -> tuple[np.ndarray, np.ndarray]:
    """BERT-corrupt ``ids`` (B, T). Returns (inputs, labels), both int64 of the same shape.

    ``special_ids`` is either a collection of token ids that must never be
    chosen (e.g. {CLS, SEP, PAD}), or a bool array shaped like ``ids`` that is
    True at positions that must never be chosen. With a bool array the ids of
    special tokens are unknown, so ``random_token_ids`` must be given.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"mask_tokens: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"mask_tokens: ids must be integers, got dtype {ids.dtype}")
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_tokens: mask_prob must be in [0, 1], got {mask_prob}")
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_tokens: mask_token_id {mask_token_id} is outside the vocabulary [0, {vocab_size})")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"mask_tokens: ids span [{ids.min()}, {ids.max()}], outside the vocabulary [0, {vocab_size})")

    if isinstance(special_ids, np.ndarray) and special_ids.dtype == bool:
        if special_ids.shape != ids.shape:
            raise ValueError(f"mask_tokens: special_ids mask has shape {special_ids.shape}, ids have {ids.shape}")
        if random_token_ids is None:
            raise ValueError(
                "mask_tokens: with a positional special_ids mask, pass random_token_ids (the ids a chosen token "
                "may be replaced by), since the special token ids are not known"
            )
        never = special_ids
    else:
        special_list = [int(s) for s in special_ids]
        never = np.isin(ids, special_list)  # (B, T) bool
        if random_token_ids is None:
            random_token_ids = default_random_token_ids(vocab_size, special_list, mask_token_id)
    if not isinstance(random_token_ids, np.ndarray):
        random_token_ids = list(random_token_ids)
    replacements = np.asarray(random_token_ids, dtype=np.int64)
    if replacements.ndim != 1 or replacements.size == 0:
        raise ValueError("mask_tokens: random_token_ids must be a non-empty 1-D collection of ids")
    if replacements.min() < 0 or replacements.max() >= vocab_size:
        raise ValueError(
            f"mask_tokens: random_token_ids span [{replacements.min()}, {replacements.max()}], outside [0, {vocab_size})"
        )

    chosen = (rng.random(ids.shape) < mask_prob) & ~never  # (B, T) bool
    action = rng.random(ids.shape)  # (B, T) uniform: < 0.8 mask, < 0.9 random, else keep
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)

    inputs = ids.astype(np.int64)  # (B, T), a copy
    inputs[to_mask] = mask_token_id
    inputs[to_random] = replacements[rng.integers(0, replacements.size, size=int(to_random.sum()))]
    labels = np.where(chosen, ids, ignore_index).astype(np.int64)  # (B, T)
    return inputs, labels
