"""Tokenizers: text <-> integer ids.

- ``CharTokenizer``: one id per character of a corpus (char.py).
- ``ByteLevelBPE``: GPT-2-style byte-level byte-pair encoding, trained from scratch (bpe.py, bpe_train.py).
- ``WordPieceTokenizer``: BERT's tokenizer over a standard vocab.txt (bert_basic.py, wordpiece.py, bert_inputs.py).

Every tokenizer saves itself as JSON with a "type" field; ``load_tokenizer(path)``
reads such a file back into the right class.
"""

from __future__ import annotations

import os

from .bpe import ByteLevelBPE
from .char import CharTokenizer
from .json_file import read_tokenizer_json
from .wordpiece import WordPieceTokenizer

_TOKENIZER_TYPES = {cls.type_name: cls for cls in (CharTokenizer, ByteLevelBPE, WordPieceTokenizer)}


def load_tokenizer(path: str | os.PathLike):
    """Read a tokenizer saved with ``.save(path)`` and return an instance of the class it names.

    Every field is checked (type, range, shape) by the class's ``from_dict``; a bad
    file raises ValueError naming the file and the field.
    """
    data = read_tokenizer_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"load_tokenizer: {path} must hold a JSON object with a 'type' field, "
                         f"got a JSON {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _TOKENIZER_TYPES:
        raise ValueError(
            f"load_tokenizer: {path}: field 'type' is {repr(kind)[:60]}; expected one of {sorted(_TOKENIZER_TYPES)}"
        )
    return _TOKENIZER_TYPES[kind].from_dict(data, source=str(path))


__all__ = ["CharTokenizer", "ByteLevelBPE", "WordPieceTokenizer", "load_tokenizer", "read_tokenizer_json"]
