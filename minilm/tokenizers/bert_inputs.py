"""Turning token ids into BERT model inputs: special tokens, truncation, padding.

A single text becomes      [CLS] A [SEP]            token_type_ids 0 ... 0
a pair becomes             [CLS] A [SEP] B [SEP]    token_type_ids 0 ... 0 1 ... 1
(the segment ids tell BERT which sentence a token belongs to; Devlin et al. 2019, 3.2),
and attention_mask is 1 on real tokens, 0 on padding.

Truncation "longest_first" (as in Hugging Face ``tokenizers``): with room for
``budget = max_length - (number of special tokens)`` ids,
    if len(A) + len(B) <= budget:                 keep both whole
    elif the shorter one fits in half the budget: keep it whole, cut the longer to the rest
    else:                                         give each half the budget; the odd id
                                                  goes to the longer (to B on a tie)
and always cut from the end.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def longest_first_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """How many ids of A and of B survive "longest_first" truncation to ``budget`` ids."""
    if budget < 0:
        raise ValueError(f"longest_first_lengths: budget must be >= 0, got {budget}")
    if len_a + len_b <= budget:
        return len_a, len_b
    shorter = min(len_a, len_b)
    if 2 * shorter <= budget:
        return (len_a, budget - len_a) if len_a <= len_b else (budget - len_b, len_b)
    half, extra = budget // 2, budget % 2
    return (half + extra, half) if len_a > len_b else (half, half + extra)


def assemble(ids_a: Sequence[int], ids_b: Sequence[int] | None, cls_id: int, sep_id: int,
             add_special_tokens: bool = True, max_length: int | None = None) -> tuple[list[int], list[int]]:
    """(input_ids, token_type_ids) for A or (A, B), truncated to ``max_length`` if it is given."""
    ids_a = list(ids_a)
    ids_b = None if ids_b is None else list(ids_b)
    n_special = (2 if ids_b is None else 3) if add_special_tokens else 0
    if max_length is not None:
        budget = int(max_length) - n_special
        if budget < 0:
            raise ValueError(
                f"truncation: max_length={max_length} leaves no room, the {n_special} special tokens "
                f"([CLS]/[SEP]) alone need {n_special}"
            )
        if ids_b is None:
            ids_a = ids_a[:budget]
        else:
            keep_a, keep_b = longest_first_lengths(len(ids_a), len(ids_b), budget)
            ids_a, ids_b = ids_a[:keep_a], ids_b[:keep_b]

    if add_special_tokens:
        ids = [cls_id] + ids_a + [sep_id]
    else:
        ids = list(ids_a)
    types = [0] * len(ids)
    if ids_b is not None:
        second = ids_b + [sep_id] if add_special_tokens else ids_b
        ids += second
        types += [1] * len(second)
    return ids, types


def pad_rows(rows: list[list[int]], length: int, value: int) -> list[list[int]]:
    """Right-pad every row to ``length`` with ``value`` (rows already longer are left alone)."""
    return [row + [value] * (length - len(row)) for row in rows]


def stack_rows(name: str, rows: list[list[int]]) -> np.ndarray:
    """(B, T) int64 array from equal-length rows, or a ValueError naming the lengths."""
    lengths = sorted({len(r) for r in rows})
    if len(lengths) > 1:
        raise ValueError(
            f"WordPieceTokenizer: cannot stack {name} into a (B, T) array, the sequences have lengths "
            f"{lengths[:8]}{'...' if len(lengths) > 8 else ''}; pass padding='longest' (or 'max_length' with "
            "truncation) or return_arrays=False"
        )
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), lengths[0] if lengths else 0)  # (B, T)
