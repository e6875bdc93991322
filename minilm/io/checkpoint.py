"""Checkpoints: a folder with ``model.safetensors`` (arrays) and ``config.json`` (the model's settings).

This is the Hugging Face layout, so a folder saved here is the same shape as a
model downloaded from the Hub, and ``load_checkpoint`` reads such folders too.

What goes where:

* ``tensors`` (name -> array): weights, and anything else that is an array --
  the Trainer stores optimizer moments as ``"optim.m.<param name>"`` etc. (see
  ``add_prefix`` / ``take_prefix``).
* ``config`` (a JSON-able dict): the model's hyper-parameters; written to
  ``config.json`` and also copied into the safetensors metadata.
* ``extra_state`` (a JSON-able dict): step counter, learning-rate schedule
  position, RNG state (``np.random.Generator.bit_generator.state`` is a dict of
  Python ints), batcher state ... stored in the safetensors metadata under
  ``"minilm.extra_state"`` so that weights and training state live in one file
  and are replaced together by one atomic rename.

Every file is written atomically (``minilm.io.atomic``). The weights file is
written first and ``config.json`` second; the copy of the config inside the
weights file lets ``load_checkpoint`` notice a folder where only one of the two
was replaced (a crash in between, or a hand edit) instead of silently mixing them.

To replace a whole checkpoint folder at once (what the Trainer does), write it
inside ``minilm.io.atomic.atomic_folder``; ``load_checkpoint`` then also finds
the newest complete copy while a swap is half done (``completed_folder``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from minilm.io.atomic import atomic_write_text, completed_folder
from minilm.io.safetensors import load_file, load_metadata, save_file

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "Checkpoint",
    "add_prefix",
    "take_prefix",
    "WEIGHTS_NAME",
    "CONFIG_NAME",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_META_CONFIG = "minilm.config"
_META_EXTRA = "minilm.extra_state"


def _jsonable(obj: Any, where: str) -> Any:
    """Return ``obj`` with NumPy scalars turned into Python numbers; raise TypeError naming the key otherwise."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.bool_, np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint: {where} has the non-string key {k!r}; JSON keys must be str")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    hint = " (store arrays as tensors, not in config/extra_state)" if isinstance(obj, np.ndarray) else ""
    raise TypeError(f"checkpoint: {where} is a {type(obj).__name__}, which is not JSON-able{hint}")


def _split_target(folder_or_path: str | os.PathLike, weights_name: str) -> tuple[Path, Path]:
    """('ckpt/', ...) -> ckpt/model.safetensors; ('ckpt/w.safetensors', ...) -> that file in ckpt/."""
    p = Path(folder_or_path)
    if p.suffix == ".safetensors":
        return p.parent, p
    return p, p / weights_name


def save_checkpoint(
    folder_or_path: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    config: Mapping[str, Any] | None = None,
    extra_state: Mapping[str, Any] | None = None,
    *,
    weights_name: str = WEIGHTS_NAME,
) -> Path:
    """Save a checkpoint; returns the path of the weights file.

    ``folder_or_path`` is a folder (created if needed; the weights go to
    ``<folder>/<weights_name>``) or a path ending in ``.safetensors``.
    ``config.json`` is written next to the weights file.
    """
    folder, weights_path = _split_target(folder_or_path, weights_name)
    config_json = json.dumps(_jsonable(dict(config or {}), "config"), indent=2, sort_keys=True)
    extra_json = json.dumps(_jsonable(dict(extra_state or {}), "extra_state"), sort_keys=True)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "np", _META_CONFIG: config_json, _META_EXTRA: extra_json}
    save_file(tensors, weights_path, metadata)
    atomic_write_text(folder / CONFIG_NAME, config_json + "\n")
    return weights_path


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns."""

    tensors: dict[str, np.ndarray]
    config: dict[str, Any]
    extra_state: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)  # the raw safetensors metadata
    path: Path | None = None  # the weights file


def load_checkpoint(folder_or_path: str | os.PathLike, *, weights_name: str = WEIGHTS_NAME) -> Checkpoint:
    """Load a checkpoint written by ``save_checkpoint`` or a Hugging Face model folder.

    The config comes from ``config.json`` next to the weights; if that file is
    missing, from the copy in the safetensors metadata; if both exist and differ,
    ValueError (the folder mixes two saves). ``extra_state`` is ``{}`` for files
    not written by minilm.

    A folder is read as ``completed_folder`` finds it (the newest complete copy,
    also while ``atomic_folder`` is replacing it). If a writer replaces it while
    we read, the weights file changes under us: then it is read again.
    """
    if Path(folder_or_path).suffix == ".safetensors":
        return _load_once(*_split_target(folder_or_path, weights_name))
    for attempt in range(5):
        folder = completed_folder(folder_or_path)
        weights_path = folder / weights_name
        if not weights_path.is_file():
            if attempt == 4:
                return _load_once(folder, weights_path)      # raises: no weights file
            continue                                         # (or a writer just deleted the copy we found)
        before = None
        try:
            before = os.stat(weights_path)
            ckpt = _load_once(folder, weights_path)
        except (FileNotFoundError, ValueError):             # e.g. config.json of the next save: "mixes two saves"
            if attempt == 4 or not _replaced(weights_path, before):
                raise
            continue
        if not _replaced(weights_path, before):
            return ckpt
    return ckpt


def _replaced(path: Path, before: os.stat_result | None) -> bool:
    """Whether the file at ``path`` is no longer the one ``before`` described (a writer swapped the folder)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return True
    return before is None or (now.st_ino, now.st_mtime_ns) != (before.st_ino, before.st_mtime_ns)


def _load_once(folder: Path, weights_path: Path) -> Checkpoint:
    if not weights_path.is_file():
        raise FileNotFoundError(f"load_checkpoint: no weights file {str(weights_path)!r}")
    metadata = load_metadata(weights_path)
    tensors = load_file(weights_path)

    def parse(text: str, what: str) -> dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"load_checkpoint: {what} is not valid JSON: {e}") from None
        if not isinstance(value, dict):
            raise ValueError(f"load_checkpoint: {what} must hold a JSON object, got {type(value).__name__}")
        return value

    embedded = parse(metadata[_META_CONFIG], f"{weights_path} metadata {_META_CONFIG!r}") if _META_CONFIG in metadata else None
    config_path = folder / CONFIG_NAME
    if config_path.is_file():
        config = parse(config_path.read_text(encoding="utf-8"), str(config_path))
        if embedded is not None and json.dumps(embedded, sort_keys=True) != json.dumps(config, sort_keys=True):
            raise ValueError(
                f"load_checkpoint: {config_path} differs from the config saved inside {weights_path}; the folder "
                "mixes two saves (a crash between the two writes, or a hand edit). Delete the file that is wrong, "
                "or re-save the checkpoint."
            )
    elif embedded is not None:
        config = embedded
    else:
        config = {}
    extra = parse(metadata[_META_EXTRA], f"{weights_path} metadata {_META_EXTRA!r}") if _META_EXTRA in metadata else {}
    return Checkpoint(tensors=tensors, config=config, extra_state=extra, metadata=metadata, path=weights_path)


def add_prefix(prefix: str, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{"w": a} -> {"<prefix>w": a}; e.g. ``add_prefix("optim.m.", moments)``."""
    return {prefix + name: value for name, value in tensors.items()}


def take_prefix(prefix: str, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The entries whose name starts with ``prefix``, with the prefix removed (the inverse of ``add_prefix``)."""
    return {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}
