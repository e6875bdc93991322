"""Character-level tokenizer: one id per distinct character of a corpus.

The simplest possible tokenizer (the one in Karpathy's "char-rnn" and in the
seed's Shakespeare demo): the vocabulary is the sorted set of characters that
occur in the training text, and

    encode(s) = [stoi[c] for c in s]        decode(ids) = "".join(itos[i] for i in ids)

so decode(encode(s)) == s for every s written with the corpus' characters.
A character the vocabulary lacks has no id; ``encode`` raises a ValueError
that names it and where it is, rather than guessing.
"""

from __future__ import annotations

from typing import Iterable

from .json_file import JsonFile, short_repr

_MAX_REPORTED = 10  # how many unknown characters an error message lists


def _describe_char(c: str) -> str:
    """'é' (U+00E9): readable even for control characters and spaces."""
    return f"{c!r} (U+{ord(c):04X})"


class CharTokenizer(JsonFile):
    """Maps each character of a fixed alphabet to an integer id.

    Ids are assigned in sorted (code point) order, so the same set of
    characters always gives the same ids, whatever order the corpus had.
    """

    type_name = "CharTokenizer"

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"CharTokenizer: every vocabulary entry must be a single character, got {c!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: the vocabulary has repeated characters")
        self.itos: list[str] = chars                       # id -> character
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(chars)}  # character -> id

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Build the vocabulary from the distinct characters of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.from_text expects a str, got {type(text).__name__}")
        if not text:
            raise ValueError("CharTokenizer.from_text: the corpus is empty, so there is no vocabulary")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of ``text``; ValueError if any is not in the vocabulary."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.encode expects a str, got {type(text).__name__}")
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pass
        # Slow path, only on failure: collect every unknown character and its positions.
        unknown = [(pos, c) for pos, c in enumerate(text) if c not in stoi]
        listed = ", ".join(f"{_describe_char(c)} at position {pos}" for pos, c in unknown[:_MAX_REPORTED])
        more = f" and {len(unknown) - _MAX_REPORTED} more" if len(unknown) > _MAX_REPORTED else ""
        distinct = "".join(sorted({c for _, c in unknown}))
        raise ValueError(
            f"CharTokenizer.encode: {len(unknown)} character(s) of the text are not in the vocabulary "
            f"of {self.vocab_size} characters: {listed}{more}. Distinct unknown characters: {distinct!r}. "
            "Build the tokenizer from a corpus that contains them, or clean the text first."
        )

    def decode(self, ids: Iterable[int]) -> str:
        """The string whose characters have these ids; ValueError for an id out of range."""
        itos = self.itos
        out = []
        for pos, i in enumerate(ids):
            i = int(i)
            if not 0 <= i < len(itos):
                raise ValueError(
                    f"CharTokenizer.decode: id {i} at position {pos} is outside the vocabulary [0, {len(itos)})"
                )
            out.append(itos[i])
        return "".join(out)

    # ---- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"type": self.type_name, "version": 1, "chars": self.itos}

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "CharTokenizer":
        """Rebuild a tokenizer from ``to_dict()`` output; a bad field raises ValueError naming
        ``source`` and the field. ``chars`` may be a list of characters or one string."""
        cls.check_file_fields(data, source, fields={"chars"}, required=("chars",))
        chars = data["chars"]
        if isinstance(chars, str):
            chars = list(chars)
        if not isinstance(chars, list) or not chars or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise ValueError(f"CharTokenizer: {source}: field 'chars' must be a non-empty list of single "
                             f"characters, got {short_repr(data['chars'])}")
        if len(set(chars)) != len(chars):
            twice = sorted({c for c in chars if chars.count(c) > 1})[:_MAX_REPORTED]
            raise ValueError(f"CharTokenizer: {source}: field 'chars' repeats {''.join(twice)!r}; "
                             "every character must appear once")
        return cls(chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
