"""WordPiece tokenizer for BERT vocabularies (reads a standard ``vocab.txt``).

WordPiece (Schuster and Nakajima 2012; Wu et al. 2016; used by BERT, Devlin et al. 2019)
cuts each word of the basic tokenizer (``bert_basic.py``) greedily, longest match first:

    start = 0
    while start < len(word):
        take the longest word[start:end] in the vocabulary,
            spelled "##" + word[start:end] when start > 0 (a continuation piece)
        if there is none: the whole word is [UNK]
        start = end

so with the uncased BERT vocabulary "embeddings" -> ["em", "##bed", "##ding", "##s"].  Words longer than 100 characters are [UNK].
Special tokens ([CLS], [SEP], [PAD], [MASK], [UNK]) written in the text are kept whole.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from .bert_basic import basic_tokenize
from .bert_inputs import assemble, pad_rows, stack_rows
from .json_file import JsonFile, short_repr
from .special_split import split_on_specials


_CACHE_LIMIT = 200_000


# Hugging Face's WordPiece decoder glues a token to the previous one (no space) when
# it starts with one of these ("a , b ." -> "a, b.").
_GLUE_PREFIXES = (".", "?", "!", ",", "n't", "'m", "'s", "'ve", "'re")


class WordPieceTokenizer(JsonFile):
    """BERT's tokenizer: basic tokenization, then WordPiece; ids from a vocabulary list."""

    type_name = "WordPieceTokenizer"
    json_ascii = False              # the saved vocabulary stays readable, as in vocab.txt

    def __init__(self, vocab: Sequence[str], lowercase: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True, unk_token: str = "[UNK]", cls_token: str = "[CLS]",
                 sep_token: str = "[SEP]", pad_token: str = "[PAD]", mask_token: str = "[MASK]",
                 max_input_chars_per_word: int = 100, model_max_length: int = 512, source: str = "<vocab>"):
        self.vocab: list[str] = list(vocab)            # id -> token
        if not self.vocab:
            raise ValueError(f"WordPieceTokenizer: the vocabulary from {source} is empty")
        self.token_ids: dict[str, int] = {}            # token -> id (the first one, if repeated)
        for i, tok in enumerate(self.vocab):
            self.token_ids.setdefault(tok, i)
        self.lowercase = bool(lowercase)
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.model_max_length = int(model_max_length)

        named = {"unk_token": unk_token, "cls_token": cls_token, "sep_token": sep_token,
                 "pad_token": pad_token, "mask_token": mask_token}
        for attr, tok in named.items():
            if tok not in self.token_ids:
                raise ValueError(f"WordPieceTokenizer: {attr}={tok!r} is not in the vocabulary from {source}")
            setattr(self, attr, tok)
            setattr(self, attr + "_id", self.token_ids[tok])    # e.g. self.mask_token_id
        self.special_tokens: tuple[str, ...] = tuple(named.values())
        self.special_ids: frozenset[int] = frozenset(self.token_ids[t] for t in self.special_tokens)
        # No vocabulary entry is longer than this, so longer candidates need not be tried.
        self._longest_piece = max(len(t[2:]) if t.startswith("##") else len(t) for t in self.vocab)
        self._cache: dict[str, tuple[str, ...]] = {}

    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike, lowercase: bool = True, **kwargs) -> "WordPieceTokenizer":
        """Read a BERT ``vocab.txt``: one token per line, the line number (from 0) is its id."""
        with open(path, "r", encoding="utf-8") as f:
            vocab = [line.rstrip("\r\n") for line in f]
        if vocab and vocab[-1] == "":     # a trailing empty line is not a token
            vocab.pop()
        return cls(vocab, lowercase=lowercase, source=str(path), **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def token_to_id(self, token: str) -> int:
        return self.token_ids.get(token, self.unk_token_id)

    def id_to_token(self, token_id: int) -> str:
        token_id = int(token_id)
        if not 0 <= token_id < len(self.vocab):
            raise ValueError(f"WordPieceTokenizer: id {token_id} is outside the vocabulary [0, {len(self.vocab)})")
        return self.vocab[token_id]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.id_to_token(i) for i in ids]

    # ---- tokenization -------------------------------------------------------------------------
    def wordpiece(self, word: str) -> tuple[str, ...]:
        """Greedy longest-match-first pieces of one basic-tokenized word (or [UNK]); cached."""
        cached = self._cache.get(word)
        if cached is None:
            cached = self._greedy_pieces(word)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = cached
        return cached

    def _greedy_pieces(self, word: str) -> tuple[str, ...]:
        if len(word) > self.max_input_chars_per_word:
            return (self.unk_token,)
        vocab = self.token_ids
        pieces: list[str] = []
        start = 0
        while start < len(word):
            end = min(len(word), start + self._longest_piece)
            piece = None
            while end > start:                        # shrink the candidate until it is a token
                candidate = word[start:end] if start == 0 else "##" + word[start:end]
                if candidate in vocab:
                    piece = candidate
                    break
                end -= 1
            if piece is None:                         # this part cannot be spelled: the word is [UNK]
                return (self.unk_token,)
            pieces.append(piece)
            start = end
        return tuple(pieces)

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text`` (no [CLS]/[SEP] added; special tokens in the text kept)."""
        if not isinstance(text, str):
            raise TypeError(f"WordPieceTokenizer.tokenize expects a str, got {type(text).__name__}")
        tokens: list[str] = []
        for piece, is_special in split_on_specials(text, self.special_tokens):
            if is_special:
                tokens.append(piece)
                continue
            for word in basic_tokenize(piece, self.lowercase, self.strip_accents, self.tokenize_chinese_chars):
                tokens.extend(self.wordpiece(word))
        return tokens

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True,
               max_length: int | None = None, truncation: bool = False) -> list[int]:
        """Ids of ``[CLS] text [SEP]`` or ``[CLS] text [SEP] text_pair [SEP]``."""
        ids, _ = self._encode_one(text, text_pair, add_special_tokens, self._truncation_length(max_length, truncation))
        return ids

    def _encode_one(self, text, text_pair, add_special_tokens, max_length):
        ids_a = self.convert_tokens_to_ids(self.tokenize(text))
        ids_b = None if text_pair is None else self.convert_tokens_to_ids(self.tokenize(text_pair))
        return assemble(ids_a, ids_b, self.cls_token_id, self.sep_token_id, add_special_tokens, max_length)

    def _truncation_length(self, max_length, truncation) -> int | None:
        if truncation in (False, None, "do_not_truncate"):
            return None
        if truncation not in (True, "longest_first"):
            raise ValueError(
                f"WordPieceTokenizer: truncation must be False, True or 'longest_first', got {truncation!r}")
        return self.model_max_length if max_length is None else int(max_length)

    def __call__(self, texts_or_text: str | Sequence[str], text_pair: str | Sequence[str] | None = None,
                 max_length: int | None = None, truncation: bool | str = False, padding: bool | str = False,
                 return_arrays: bool = True, add_special_tokens: bool = True) -> dict:
        """Model inputs: {"input_ids", "token_type_ids", "attention_mask"}.

        A list of texts gives (B, T) int64 arrays; one text gives (1, T) arrays (or flat lists
        with return_arrays=False).  padding: False, "longest" (or True) or "max_length".
        truncation: False, or True / "longest_first" (to max_length, else model_max_length).
        """
        single = isinstance(texts_or_text, str)
        texts = [texts_or_text] if single else list(texts_or_text)
        if text_pair is None:
            pairs = [None] * len(texts)
        elif single:
            if not isinstance(text_pair, str):
                raise TypeError("WordPieceTokenizer: with one text, text_pair must be one str too")
            pairs = [text_pair]
        else:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(texts):
                raise ValueError(f"WordPieceTokenizer: {len(texts)} texts but {len(pairs)} text pairs")

        limit = self._truncation_length(max_length, truncation)
        ids_rows, type_rows = [], []
        for text, pair in zip(texts, pairs):
            ids, types = self._encode_one(text, pair, add_special_tokens, limit)
            ids_rows.append(ids)
            type_rows.append(types)
        mask_rows = [[1] * len(row) for row in ids_rows]

        if padding in (True, "longest"):
            length = max((len(r) for r in ids_rows), default=0)
        elif padding == "max_length":
            length = self.model_max_length if max_length is None else int(max_length)
        elif padding in (False, None, "do_not_pad"):
            length = None
        else:
            raise ValueError(f"WordPieceTokenizer: padding must be False, 'longest' or 'max_length', got {padding!r}")
        if length is not None:
            ids_rows = pad_rows(ids_rows, length, self.pad_token_id)
            type_rows = pad_rows(type_rows, length, 0)
            mask_rows = pad_rows(mask_rows, length, 0)

        out = {"input_ids": ids_rows, "token_type_ids": type_rows, "attention_mask": mask_rows}
        if return_arrays:
            return {name: stack_rows(name, rows) for name, rows in out.items()}   # each (B, T)
        if single:
            return {name: rows[0] for name, rows in out.items()}
        return out

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of ids: "##" pieces join the previous piece; other pieces get a space before
        them, except ".", ",", "!", "?" (and "'s"-like pieces), as Hugging Face's decoder does."""
        ids = [int(i) for i in ids]          # also accepts a 1-D NumPy array
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.special_ids]
        parts = []
        for k, token in enumerate(self.convert_ids_to_tokens(ids)):
            if k == 0:
                parts.append(token)
            elif token.startswith("##"):
                parts.append(token[2:])
            elif token.startswith(_GLUE_PREFIXES):
                parts.append(token)
            else:
                parts.append(" " + token)
        return "".join(parts)

    # ---- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "type": self.type_name, "version": 1, "vocab": self.vocab,
            "lowercase": self.lowercase, "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "unk_token": self.unk_token, "cls_token": self.cls_token, "sep_token": self.sep_token,
            "pad_token": self.pad_token, "mask_token": self.mask_token,
            "max_input_chars_per_word": self.max_input_chars_per_word, "model_max_length": self.model_max_length,
        }

    # field -> (accepted types, what the error says); "vocab" is checked on its own
    _FIELDS = {
        "lowercase": ((bool,), "true or false"),
        "strip_accents": ((bool, type(None)), "true, false or null"),
        "tokenize_chinese_chars": ((bool,), "true or false"),
        "unk_token": ((str,), "a string"), "cls_token": ((str,), "a string"), "sep_token": ((str,), "a string"),
        "pad_token": ((str,), "a string"), "mask_token": ((str,), "a string"),
        "max_input_chars_per_word": ((int,), "a positive integer"),
        "model_max_length": ((int,), "a positive integer"),
    }

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "WordPieceTokenizer":
        """Rebuild a tokenizer from ``to_dict()`` output; a bad field raises ValueError naming
        ``source`` and the field."""
        cls.check_file_fields(data, source, fields={"vocab", *cls._FIELDS}, required=("vocab",))
        vocab = data["vocab"]
        if not isinstance(vocab, list) or not vocab or not all(isinstance(t, str) for t in vocab):
            raise ValueError(f"WordPieceTokenizer: {source}: field 'vocab' must be a non-empty list of "
                             f"strings, got {short_repr(vocab)}")
        options = {}
        for name, (types, what) in cls._FIELDS.items():
            if name not in data:
                continue
            value = data[name]
            ok = type(value) in types and not (types == (int,) and value < 1)
            if not ok:
                raise ValueError(f"WordPieceTokenizer: {source}: field {name!r} must be {what}, got {short_repr(value)}")
            options[name] = value
        return cls(vocab, source=source, **options)

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase})"
