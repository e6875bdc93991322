"""Tokenizers: text <-> integer ids.

- ``CharTokenizer``: one id per character of a corpus (char.py).
- ``ByteLevelBPE``: GPT-2-style byte-level byte-pair encoding, trained from scratch (bpe.py, bpe_train.py).
- ``WordPieceTokenizer``: BERT's tokenizer over a standard vocab.txt (bert_basic.py, wordpiece.py, bert_inputs.py).

Every tokenizer saves itself as JSON with a "type" field; ``load_tokenizer(path)``
reads such a file back into the right class.
"""

from __future__ import annotations

import json
import os

from .bpe import ByteLevelBPE
from .char import CharTokenizer
from .wordpiece import WordPieceTokenizer

_TOKENIZER_TYPES = {cls.type_name: cls for cls in (CharTokenizer, ByteLevelBPE, WordPieceTokenizer)}


def load_tokenizer(path: str | os.PathLike):
    """Read a tokenizer saved with ``.save(path)`` and return an instance of the class it names."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"load_tokenizer: {path} is not valid JSON ({err})") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in _TOKENIZER_TYPES:
        raise ValueError(
            f"load_tokenizer: {path} has type {kind!r}; expected one of {sorted(_TOKENIZER_TYPES)}"
        )
    return _TOKENIZER_TYPES[kind].from_dict(data, source=str(path))


__all__ = ["CharTokenizer", "ByteLevelBPE", "WordPieceTokenizer", "load_tokenizer"]
