"""A deterministic train/validation split of one text, cut at a document or line boundary.

The validation part is the *end* of the text, not a random sample: neighbouring
lines are strongly correlated, so a random line-level split would let the model
see near-copies of its validation text while training.
"""

from __future__ import annotations

__all__ = ["split_text"]


def _nearest(text: str, separator: str, cut: int, window: int) -> int | None:
    """The position just after the occurrence of ``separator`` closest to ``cut`` within ``window``; else None."""
    lo, hi = max(0, cut - window), min(len(text), cut + window)
    before = text.rfind(separator, lo, cut)
    after = text.find(separator, cut, hi)
    candidates = [i + len(separator) for i in (before, after) if i != -1]
    candidates = [c for c in candidates if 0 < c < len(text)]
    return min(candidates, key=lambda c: (abs(c - cut), c)) if candidates else None


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """Split ``text`` into (train, validation) with about ``val_fraction`` of the characters at the end.

    The ideal cut is ``round(len(text) * (1 - val_fraction))``. We move it to the
    nearest blank line (a document boundary, ``"\\n\\n"``) within a window of
    ``max(256, len(text) // 50)`` characters; failing that, the nearest line end;
    failing that, the exact character. ``train + validation == text``.
    """
    if not isinstance(text, str):
        raise TypeError(f"split_text: text must be str, got {type(text).__name__}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"split_text: val_fraction must be in (0, 1), got {val_fraction}")
    if len(text) < 2:
        raise ValueError(f"split_text: a text of {len(text)} characters cannot be split into two non-empty parts")
    cut = min(max(round(len(text) * (1.0 - val_fraction)), 1), len(text) - 1)  # both parts non-empty
    window = max(256, len(text) // 50)
    for separator in ("\n\n", "\n"):
        boundary = _nearest(text, separator, cut, window)
        if boundary is not None:
            cut = boundary
            break
    return text[:cut], text[cut:]
