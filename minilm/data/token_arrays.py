"""Token ids as compact NumPy arrays, and a disk cache so a corpus is tokenized once.

A corpus of N tokens is one 1-D array. With a vocabulary of at most 65,536 ids
every id fits in 16 bits, so ``uint16`` halves the memory of ``int32`` (GPT-2's
50,257-token vocabulary fits); larger vocabularies use ``uint32``. Batchers
widen windows to int64 only when they cut them out.

The cache file is ``<cache_dir>/tokens-<key>.npy``, written by ``np.save`` with
``allow_pickle=False`` through an atomic rename and read back with
``allow_pickle=False``: a cache file can hold only numbers. The key should
change whenever the ids would: ``token_cache_key(text, tokenizer_json)`` is the
SHA-256 of both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["encode_to_array", "token_dtype", "token_cache_key", "cached_token_array"]

_KEY = re.compile(r"[A-Za-z0-9_.-]{1,200}")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id < vocab_size fits in 16 bits (vocab_size <= 65536), else uint32."""
    if not isinstance(vocab_size, (int, np.integer)) or isinstance(vocab_size, bool) or vocab_size <= 0:
        raise ValueError(f"token_dtype: vocab_size must be a positive int, got {vocab_size!r}")
    if vocab_size > 2**32:
        raise ValueError(f"token_dtype: vocab_size {vocab_size} does not fit in uint32")
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def encode_to_array(ids: Iterable[int] | np.ndarray, vocab_size: int) -> np.ndarray:
    """A 1-D array of ``ids`` in the smallest unsigned dtype for ``vocab_size``; every id is checked in range."""
    dtype = token_dtype(vocab_size)
    arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
    if arr.ndim != 1:
        raise ValueError(f"encode_to_array: ids must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=dtype)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"encode_to_array: ids must be integers, got dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= vocab_size))
    if bad.size:
        raise ValueError(
            f"encode_to_array: {bad.size} ids outside [0, {vocab_size}), the first at position {bad[0]}: {arr[bad[0]]}"
        )
    return arr.astype(dtype)


def token_cache_key(text: str, tokenizer_json: str | dict[str, Any], *extra: str) -> str:
    """SHA-256 (hex) of the corpus text and the tokenizer's JSON (plus any ``extra`` strings).

    A dict is serialized with sorted keys first, so equal tokenizers give equal keys.
    Each part is length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    """
    if isinstance(tokenizer_json, dict):
        tokenizer_json = json.dumps(tokenizer_json, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    h = hashlib.sha256()
    for part in (text, tokenizer_json, *extra):
        if not isinstance(part, str):
            raise TypeError(f"token_cache_key: expected str parts, got {type(part).__name__}")
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def cached_token_array(cache_dir: str | os.PathLike, key: str, build_fn: Callable[[], np.ndarray]) -> np.ndarray:
    """Load ``<cache_dir>/tokens-<key>.npy`` if present, else ``build_fn()``, save it, and return it.

    ``build_fn`` must return a 1-D integer array (e.g. from ``encode_to_array``).
    A cache file that cannot be read (truncated, foreign) is rebuilt with a warning.
    """
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"cached_token_array: key must be 1-200 characters of [A-Za-z0-9_.-], got {key!r}")
    folder = Path(cache_dir)
    path = folder / f"tokens-{key}.npy"
    if path.is_file():
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.ndim == 1 and arr.dtype.kind in "iu":
                return arr
            problem = f"it holds a {arr.dtype} array of shape {arr.shape}"
        except (ValueError, OSError, EOFError) as e:
            problem = str(e)
        warnings.warn(f"cached_token_array: rebuilding {path}: {problem}", RuntimeWarning, stacklevel=2)
    arr = build_fn()
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in "iu":
        got = f"{type(arr).__name__} {getattr(arr, 'dtype', '')} {getattr(arr, 'shape', '')}"
        raise TypeError(f"cached_token_array: build_fn must return a 1-D integer numpy array, got {got}")
    folder.mkdir(parents=True, exist_ok=True)
    # temp file + rename, so a crash never leaves a half-written cache entry. (minilm.io.atomic does
    # the same with fsync; data sits below io in the layers, so it does not import it.)
    tmp = folder / f".tokens-{key}.{secrets.token_hex(6)}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return arr
