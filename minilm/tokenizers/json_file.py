"""A tokenizer's file: its to_dict() as one JSON object, written atomically and read back with checks."""

from __future__ import annotations

import json
import os

from minilm.io.atomic import atomic_write_text


def short_repr(value, limit: int = 60) -> str:
    """repr(value), cut to ``limit`` characters so an error about a huge field stays one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


class JsonFile:
    """save(path) / load(path) for a tokenizer class with to_dict() and from_dict(data, source=...)."""

    json_ascii = True       # escape non-ASCII characters, so any character survives any editor

    def save(self, path: str | os.PathLike) -> None:
        """Write to_dict() as JSON, atomically: a crash mid-write leaves the old file, never a torn one."""
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=self.json_ascii))

    @classmethod
    def load(cls, path: str | os.PathLike):
        return cls.from_dict(read_tokenizer_json(path), source=str(path))

    @classmethod
    def check_file_fields(cls, data, source: str, fields: set, required: tuple) -> None:
        """What every tokenizer file shares, checked for from_dict: a JSON object of this class's
        "type", "version" 1, no fields but `fields` and all of `required`; ValueError naming source."""
        name = cls.__name__
        if not isinstance(data, dict):
            raise ValueError(f"{name}: {source} must hold a JSON object, got {type(data).__name__}")
        if data.get("type") != cls.type_name:
            raise ValueError(f"{name}: {source}: field 'type' is {short_repr(data.get('type'))}, "
                             f"expected {cls.type_name!r}")
        known = {"type", "version", *fields}
        unknown = sorted(str(k) for k in set(data) - known)
        if unknown:
            raise ValueError(f"{name}: {source} has unknown fields {unknown} (known: {sorted(known)})")
        version = data.get("version", 1)
        if type(version) is not int or version != 1:
            raise ValueError(f"{name}: {source}: field 'version' is {short_repr(version)}; "
                             "this minilm reads version 1")
        for key in required:
            if key not in data:
                raise ValueError(f"{name}: {source} has no {key!r} field")
