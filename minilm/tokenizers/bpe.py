"""Byte-level BPE tokenizer (GPT-2 style), trained from scratch.

The vocabulary is
    ids 0..255                  the single bytes
    ids 256..256+M-1            one per learned merge: bytes(256+k) = bytes(a_k) + bytes(b_k)
    ids 256+M..                 special tokens such as "<|endoftext|>"

Because every string is a sequence of UTF-8 bytes and every byte has an id,
encode/decode round-trips ANY Unicode text exactly; no "unknown" token exists.

Encoding a pre-token applies the learned merges in the order they were learned:
    while some adjacent pair of the current ids was learned:
        fuse every occurrence of the pair learned earliest (lowest rank)
which reproduces the segmentation training gave it.  Results are cached per
pre-token, since real text repeats the same words over and over.
The training loop itself lives in ``bpe_train.py``.

The pre-tokenizer (the regex that cuts text into words before merging) belongs
to the tokenizer type, in code: a saved file holds only merges and special
tokens. A regex read from a file would be code from a file -- ``(a|a)+$`` makes
``re`` take exponential time -- so a file's ``pattern`` key is accepted only
when it equals the built-in one (files written before this change have it).
"""

from __future__ import annotations

import re
from typing import Iterable

from .bpe_train import GPT2_LIKE_SPLIT_PATTERN, count_words, learn_merges, merge_pair
from .json_file import JsonFile, short_repr
from .special_split import split_on_specials

_CACHE_LIMIT = 200_000  # distinct pre-tokens kept in the encode cache before it is cleared
# Each merge's bytes are the concatenation of two earlier tokens, so a hand-made list of
# 40 merges ((a, a), (256, 256), (257, 257), ...) would ask for 2**40 bytes. Real vocabularies
# hold a few MB of token bytes at most; more than this means a corrupted or hostile file.
_MAX_TOKEN_BYTES_TOTAL = 64 << 20
_SPLIT_RE = re.compile(GPT2_LIKE_SPLIT_PATTERN)


class ByteLevelBPE(JsonFile):
    """Byte-level byte-pair-encoding tokenizer.

    Build it with ``ByteLevelBPE.train(text, vocab_size)`` or ``ByteLevelBPE.load(path)``.
    """

    type_name = "ByteLevelBPE"
    pattern = GPT2_LIKE_SPLIT_PATTERN      # the pre-tokenizer: fixed by the type, never read from a file

    def __init__(self, merges: Iterable[tuple[int, int]], special_tokens: Iterable[str] = ("<|endoftext|>",)):
        self.merges: list[tuple[int, int]] = []
        self._token_bytes: list[bytes] = [bytes([i]) for i in range(256)]  # id -> its bytes
        total_bytes = 256
        for k, pair in enumerate(merges):
            a, b = (int(x) for x in pair)
            new_id = 256 + k
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"ByteLevelBPE: merge {k} = ({a}, {b}) refers to an id not defined before {new_id}")
            total_bytes += len(self._token_bytes[a]) + len(self._token_bytes[b])
            if total_bytes > _MAX_TOKEN_BYTES_TOTAL:
                raise ValueError(f"ByteLevelBPE: merge {k} = ({a}, {b}) takes the vocabulary past "
                                 f"{_MAX_TOKEN_BYTES_TOTAL >> 20} MiB of token bytes; the merges are corrupted")
            self.merges.append((a, b))
            self._token_bytes.append(self._token_bytes[a] + self._token_bytes[b])
        self._merge_rank: dict[tuple[int, int], int] = {pair: k for k, pair in enumerate(self.merges)}

        special_tokens = list(special_tokens)
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"ByteLevelBPE: repeated special tokens in {special_tokens}")
        for tok in special_tokens:
            if not isinstance(tok, str) or not tok:
                raise ValueError(f"ByteLevelBPE: special tokens must be non-empty strings, got {tok!r}")
        first_special = 256 + len(self.merges)
        self.special_tokens: dict[str, int] = {tok: first_special + i for i, tok in enumerate(special_tokens)}
        self._special_by_id: dict[int, str] = {i: tok for tok, i in self.special_tokens.items()}

        self._split_re = _SPLIT_RE
        self._bytes_to_id: dict[bytes, int] = {}
        for i, bs in enumerate(self._token_bytes):
            self._bytes_to_id.setdefault(bs, i)
        self._cache: dict[str, tuple[int, ...]] = {}

    # ---- training -----------------------------------------------------------------------------
    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Iterable[str] = ("<|endoftext|>",),
              min_frequency: int = 2) -> "ByteLevelBPE":
        """Learn vocab_size - 256 - len(special_tokens) merges from ``text``.

        Special tokens are cut out of the training text (nothing merges across or into them).
        Training stops early, with a smaller vocabulary, when no pair occurs at least
        ``min_frequency`` times.
        """
        if not isinstance(text, str):
            raise TypeError(f"ByteLevelBPE.train expects text as a str, got {type(text).__name__}")
        special_tokens = tuple(special_tokens)
        smallest = 256 + len(special_tokens)
        if int(vocab_size) < smallest:
            raise ValueError(
                f"ByteLevelBPE.train: vocab_size={vocab_size} is smaller than 256 bytes + "
                f"{len(special_tokens)} special tokens = {smallest}"
            )
        pieces = split_on_specials(text, special_tokens)
        word_counts = count_words(piece for piece, is_special in pieces if not is_special)
        merges = learn_merges(word_counts, int(vocab_size) - smallest, min_frequency=min_frequency)
        return cls(merges, special_tokens)

    # ---- vocabulary ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._token_bytes) + len(self.special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes of a token (a special token's UTF-8 text)."""
        token_id = int(token_id)
        if token_id in self._special_by_id:
            return self._special_by_id[token_id].encode("utf-8")
        if not 0 <= token_id < len(self._token_bytes):
            raise ValueError(f"ByteLevelBPE: token id {token_id} is outside the vocabulary [0, {self.vocab_size})")
        return self._token_bytes[token_id]

    def id_to_token(self, token_id: int) -> str:
        """A readable form of a token: its text, with bytes that are not whole UTF-8 shown as \\xNN."""
        token_id = int(token_id)
        if token_id in self._special_by_id:
            return self._special_by_id[token_id]
        return self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")

    def token_to_id(self, token: str | bytes) -> int:
        """The id of a special token, or of the token whose bytes are ``token`` (str -> UTF-8)."""
        if isinstance(token, bytes):
            as_text = token.decode("utf-8", errors="replace")
            if as_text in self.special_tokens and as_text.encode("utf-8") == token:
                return self.special_tokens[as_text]
        else:
            if token in self.special_tokens:
                return self.special_tokens[token]
            token = token.encode("utf-8")
        if token not in self._bytes_to_id:
            raise KeyError(f"ByteLevelBPE.token_to_id: {token!r} is not a single token of this vocabulary")
        return self._bytes_to_id[token]

    # ---- encoding -----------------------------------------------------------------------------
    def _encode_pretoken(self, piece: str) -> tuple[int, ...]:
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        ids = list(piece.encode("utf-8"))
        ranks = self._merge_rank
        while len(ids) >= 2:
            # The adjacent pair that was learned earliest is merged first.
            best = min(zip(ids, ids[1:]), key=lambda pair: ranks.get(pair, len(ranks)))
            rank = ranks.get(best)
            if rank is None:          # no adjacent pair is a learned merge: done
                break
            ids = merge_pair(ids, best, 256 + rank)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        result = tuple(ids)
        self._cache[piece] = result
        return result

    def _resolve_allowed(self, allowed_special) -> tuple[str, ...]:
        if allowed_special == "all":
            return tuple(self.special_tokens)
        if allowed_special in ("none", None):
            return ()
        if isinstance(allowed_special, str):
            allowed_special = (allowed_special,)
        allowed = tuple(allowed_special)
        unknown = [t for t in allowed if t not in self.special_tokens]
        if unknown:
            raise ValueError(
                f"ByteLevelBPE.encode: allowed_special names {unknown}, which are not special tokens of this "
                f"tokenizer ({list(self.special_tokens)})"
            )
        return allowed

    def encode(self, text: str, allowed_special="all") -> list[int]:
        """Token ids of ``text``.

        allowed_special: "all" (default) -> every special token written in the text becomes its id;
        "none" or () -> special-token strings are encoded as ordinary bytes;
        an iterable of special-token strings -> only those are recognised.
        """
        if not isinstance(text, str):
            raise TypeError(f"ByteLevelBPE.encode expects a str, got {type(text).__name__}")
        ids: list[int] = []
        for piece, is_special in split_on_specials(text, self._resolve_allowed(allowed_special)):
            if is_special:
                ids.append(self.special_tokens[piece])
                continue
            for pretoken in self._split_re.findall(piece):
                ids.extend(self._encode_pretoken(pretoken))
        return ids

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of a sequence of ids.  Ids that cut a UTF-8 character in half decode with
        ``errors`` ("replace" gives U+FFFD; "strict" raises)."""
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors=errors)

    # ---- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "type": self.type_name,
            "version": 1,
            "merges": [list(pair) for pair in self.merges],
            "special_tokens": list(self.special_tokens),   # in id order, after the merges
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "ByteLevelBPE":
        """Rebuild a tokenizer from ``to_dict()`` output, checking every field's type and range;
        a bad field raises ValueError naming ``source`` and the field."""
        def bad(field: str, what: str):
            return ValueError(f"ByteLevelBPE: {source}: field {field!r}: {what}")

        cls.check_file_fields(data, source, fields={"merges", "special_tokens", "pattern"},
                              required=("merges", "special_tokens"))
        merges = data["merges"]
        if not isinstance(merges, list):
            raise bad("merges", f"must be a list of [a, b] id pairs, got {short_repr(merges)}")
        for k, pair in enumerate(merges):
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(type(x) is int and 0 <= x < 256 + k for x in pair)):
                raise bad("merges", f"merge {k} must be a pair [a, b] of ids defined before {256 + k} "
                                    f"(0 <= id < {256 + k}), got {short_repr(pair)}")
        specials = data["special_tokens"]
        if not isinstance(specials, list) or not all(isinstance(t, str) and t for t in specials):
            raise bad("special_tokens", f"must be a list of non-empty strings, got {short_repr(specials)}")
        if len(set(specials)) != len(specials):
            raise bad("special_tokens", f"a token appears twice in {short_repr(specials)}")
        if "pattern" in data and data["pattern"] != GPT2_LIKE_SPLIT_PATTERN:
            # Never compile a regex from a file (see the module docstring).
            raise bad("pattern", "differs from the built-in pre-tokenizer; minilm does not read a regex "
                                 "from a file (remove the field, or re-train the tokenizer)")
        try:
            return cls([tuple(p) for p in merges], specials)
        except ValueError as err:     # only the total-size limit is left to fail here
            raise bad("merges", str(err).removeprefix("ByteLevelBPE: ")) from None

    def __repr__(self) -> str:
        return (f"ByteLevelBPE(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")

