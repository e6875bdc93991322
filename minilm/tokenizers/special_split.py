"""Cutting running text around special tokens such as "<|endoftext|>" or "[MASK]".

Special tokens are matched exactly (case-sensitive) in the raw text, before any
normalisation, and are never split further; longer tokens win over their prefixes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable


@lru_cache(maxsize=64)
def _splitter(specials: tuple[str, ...]) -> re.Pattern:
    # Longest first, so that "[SEP2]" would win over "[SEP]" at the same position.
    ordered = sorted(specials, key=len, reverse=True)
    return re.compile("(" + "|".join(re.escape(s) for s in ordered) + ")")


def split_on_specials(text: str, specials: Iterable[str]) -> list[tuple[str, bool]]:
    """Cut ``text`` into (piece, is_special) parts, in order; empty ordinary pieces are dropped.

    split_on_specials("a[MASK]b", ["[MASK]"]) -> [("a", False), ("[MASK]", True), ("b", False)]
    """
    specials = tuple(sorted({s for s in specials if s}))
    if not specials:
        return [(text, False)] if text else []
    parts = _splitter(specials).split(text)   # the captured separators sit at odd positions
    return [(part, k % 2 == 1) for k, part in enumerate(parts) if part or k % 2 == 1]
