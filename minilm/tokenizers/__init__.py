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


def read_tokenizer_json(path: str | os.PathLike):
    """The JSON value in a tokenizer file; every way it can fail is a one-line error naming the file.

    A missing file stays a FileNotFoundError; anything else wrong (a folder, unreadable,
    not UTF-8, not JSON, nested too deeply) is a ValueError.
    """
    if os.path.isdir(path):
        raise ValueError(f"load_tokenizer: {path} is a folder, not a tokenizer file")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"load_tokenizer: {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"load_tokenizer: {path} is not valid JSON ({err})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"load_tokenizer: {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except RecursionError:
        raise ValueError(f"load_tokenizer: {path} holds JSON nested too deeply to be a tokenizer") from None
    except OSError as err:
        raise ValueError(f"load_tokenizer: cannot read {path}: {err.strerror or err}") from None


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
