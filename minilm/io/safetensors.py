"""The safetensors file format, read and written by hand with NumPy.

A safetensors file (https://github.com/huggingface/safetensors) is three parts::

    [ 8 bytes: N, the header length, unsigned 64-bit little-endian ]
    [ N bytes: a UTF-8 JSON object, padded with spaces to a multiple of 8 bytes ]
    [ the data: every tensor's raw little-endian bytes, one after another ]

The JSON header maps each tensor name to where its bytes are::

    {"__metadata__": {"format": "np"},              # optional, str -> str only
     "wte.weight": {"dtype": "F32", "shape": [50257, 768], "data_offsets": [0, 154389504]},
     ...}

``data_offsets`` are ``[begin, end)`` byte positions counted from the start of
the data part, so ``end - begin == prod(shape) * itemsize``. The format has no
pickle and no code: loading a file can only ever produce arrays.

Like the reference writer we store tensors largest-itemsize first (then by name),
so each tensor starts at a multiple of its itemsize and can be viewed in place.
Like the reference reader we insist that the tensors tile the data part exactly:
no overlaps, no gaps, no trailing bytes. BF16 (bfloat16, the top 16 bits of a
float32) has no NumPy dtype, so it loads as float32 (exactly: shift left by 16).
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Mapping

import numpy as np

from minilm.io.atomic import atomic_writer

__all__ = ["save_file", "load_file", "load_metadata", "read_header", "save", "load", "DTYPES", "SafetensorsError"]

# safetensors dtype name -> the little-endian NumPy dtype of its stored bytes.
# BF16 is stored as raw uint16 and widened to float32 on load.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("bool"),
}
# NumPy (kind, itemsize) -> safetensors name, for writing. BF16 is never written
# from NumPy (NumPy has no bfloat16), so the uint16 entry means U16.
_NAME_OF = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items() if name != "BF16"}

_HEADER_LIMIT = 100_000_000  # the reference reader refuses larger headers too
_METADATA_KEY = "__metadata__"


def _short(value, limit: int = 80) -> str:
    """repr(value) cut to ``limit`` characters: an error about a huge header stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SafetensorsError(ValueError):
    """A file (or bytes) that is not a valid safetensors file; the message names the file and the tensor.

    Every check runs on the header, against the file's size, before any tensor memory is
    allocated: a header that lies (a shape of 2**40 elements, offsets past the end) costs nothing.
    """


# ----------------------------------------------------------------------------- writing


def _as_storable(name: object, value: object) -> np.ndarray:
    """Check one (name, array) pair and return a C-contiguous little-endian copy or view."""
    if not isinstance(name, str):
        raise TypeError(f"safetensors: tensor names must be str, got {type(name).__name__} {name!r}")
    if name == _METADATA_KEY:
        raise ValueError(f"safetensors: {_METADATA_KEY!r} is reserved for the metadata and cannot name a tensor")
    if not isinstance(value, (np.ndarray, np.generic)):
        raise TypeError(f"safetensors: tensor {name!r} must be a numpy array, got {type(value).__name__}")
    arr = np.asarray(value)
    if not arr.flags.c_contiguous:  # (np.ascontiguousarray would turn a 0-d array into shape (1,))
        arr = arr.copy(order="C")
    key = (arr.dtype.kind, arr.dtype.itemsize)
    if key not in _NAME_OF:
        raise TypeError(
            f"safetensors: tensor {name!r} has dtype {arr.dtype}, which safetensors cannot store "
            f"(supported: {', '.join(sorted(_NAME_OF.values()))})"
        )
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not np.little_endian):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


def _layout(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None) -> tuple[bytes, list[np.ndarray]]:
    """Return (the 8-byte length + padded JSON header, the arrays in file order)."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"safetensors: tensors must be a dict of name -> array, got {type(tensors).__name__}")
    arrays = {name: _as_storable(name, value) for name, value in tensors.items()}
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))

    header: dict[str, object] = {}
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError(f"safetensors: metadata must be a dict of str -> str, got {type(metadata).__name__}")
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"safetensors: metadata must map str -> str; entry {k!r}: {type(v).__name__} {v!r}")
        header[_METADATA_KEY] = dict(metadata)
    offset = 0
    for name in order:
        arr = arrays[name]
        header[name] = {
            "dtype": _NAME_OF[(arr.dtype.kind, arr.dtype.itemsize)],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes

    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # pad so the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text, [arrays[n] for n in order]


def _raw_bytes(arr: np.ndarray) -> memoryview:
    """The array's bytes without a copy (it is C-contiguous and little-endian already)."""
    return memoryview(arr.reshape(-1).view(np.uint8))


def save(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize ``tensors`` (and optional str -> str ``metadata``) to safetensors bytes in memory."""
    head, arrays = _layout(tensors, metadata)
    return head + b"".join(_raw_bytes(a) for a in arrays)


def save_file(
    tensors: Mapping[str, np.ndarray], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` to ``path`` as a safetensors file.

    The write is atomic (temporary file + fsync + rename, see ``minilm.io.atomic``):
    a crash leaves either the previous file or the complete new one.
    """
    head, arrays = _layout(tensors, metadata)
    with atomic_writer(path) as f:
        f.write(head)
        for arr in arrays:
            f.write(_raw_bytes(arr))


# ----------------------------------------------------------------------------- reading


def _parse_header(head: bytes, data_len: int, where: str) -> tuple[dict[str, str], list[tuple]]:
    """Validate a header against a data part of ``data_len`` bytes.

    Returns (metadata, entries), entries = [(name, dtype_name, shape, begin, end)]
    sorted by ``begin``.
    """
    def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
        names = [k for k, _ in pairs]
        if len(set(names)) != len(names):
            twice = sorted({k for k in names if names.count(k) > 1})
            raise SafetensorsError(f"safetensors: {where}: the header names {_short(twice)} more than once")
        return dict(pairs)

    try:
        header = json.loads(head.decode("utf-8"), object_pairs_hook=no_duplicates)
    except SafetensorsError:
        raise
    except RecursionError:
        raise SafetensorsError(f"safetensors: {where}: the header JSON is nested too deeply") from None
    except ValueError as e:  # not UTF-8, not JSON, or an integer of more than 4300 digits
        raise SafetensorsError(f"safetensors: {where}: the header is not valid UTF-8 JSON ({e}); is this a safetensors file?") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"safetensors: {where}: the header must be a JSON object, got {type(header).__name__}")

    metadata = header.pop(_METADATA_KEY, {})
    if metadata is None:  # the reference writes null for "no metadata" in some versions
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError(f"safetensors: {where}: {_METADATA_KEY!r} must be an object of str -> str, got {_short(metadata)}")

    entries = []
    for name, info in header.items():
        what = f"safetensors: {where}: tensor {_short(name)}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{what}: expected an object with keys dtype, shape, data_offsets; got {_short(info)}")
        dtype_name, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype_name, str) or dtype_name not in DTYPES:
            raise SafetensorsError(f"{what}: unknown or unsupported dtype {_short(dtype_name)} (supported: {', '.join(DTYPES)})")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise SafetensorsError(f"{what}: shape must be a list of non-negative integers, got {_short(shape)}")
        if math.prod(max(d, 1) for d in shape) * DTYPES[dtype_name].itemsize >= 2**63:
            # NumPy refuses such a shape even when a 0 in it makes the tensor empty
            raise SafetensorsError(f"{what}: shape {_short(shape)} is too large for any array (2**63 bytes or more)")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise SafetensorsError(f"{what}: data_offsets must be [begin, end] with 0 <= begin <= end, got {_short(offsets)}")
        begin, end = offsets
        if end > data_len:
            raise SafetensorsError(
                f"{what}: data_offsets {_short(offsets)} run past the end of the data ({data_len} bytes); "
                "the file is truncated or corrupted"
            )
        # Checked against the bytes in the file, so a shape that lies never reaches an allocation.
        expected = math.prod(shape) * DTYPES[dtype_name].itemsize
        if end - begin != expected:
            needs = f"{expected} bytes" if expected < 2**64 else "more than 2**64 bytes"   # (no 5000-digit numbers)
            raise SafetensorsError(
                f"{what}: shape {_short(shape)} of {dtype_name} needs {needs} but data_offsets "
                f"[{begin}, {end}] hold {end - begin}"
            )
        entries.append((name, dtype_name, tuple(shape), begin, end))

    entries.sort(key=lambda e: (e[3], e[4]))
    position = 0
    previous = None
    for name, _, _, begin, end in entries:
        if begin < position:
            raise SafetensorsError(
                f"safetensors: {where}: tensor {_short(name)} (bytes [{begin}, {end}]) overlaps tensor {_short(previous)} "
                f"(which ends at byte {position})"
            )
        if begin > position:
            raise SafetensorsError(
                f"safetensors: {where}: tensor {_short(name)} starts at byte {begin} but the previous tensor ends at "
                f"{position}; safetensors data must be contiguous (a gap means a corrupted header)"
            )
        position, previous = end, name
    if position != data_len:
        raise SafetensorsError(
            f"safetensors: {where}: the tensors cover {position} bytes of data but the file holds {data_len}; "
            "the file is corrupted (or has bytes appended)"
        )
    return metadata, entries


def _header_length(first8: bytes, file_size: int, where: str) -> int:
    if len(first8) < 8:
        raise SafetensorsError(
            f"safetensors: {where}: the file is {file_size} bytes, too short for the 8-byte header length; "
            "it is truncated or not a safetensors file"
        )
    (n,) = struct.unpack("<Q", first8)
    if n > _HEADER_LIMIT or 8 + n > file_size:
        raise SafetensorsError(
            f"safetensors: {where}: the header claims {n} bytes but the file has only {file_size - 8} after the "
            "length field; the file is truncated or not a safetensors file"
        )
    return n


def _to_arrays(buf: bytearray | bytes, data_start: int, entries: list[tuple], where: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, dtype_name, shape, begin, end in entries:
        stored = DTYPES[dtype_name]
        count = (end - begin) // stored.itemsize
        arr = np.frombuffer(buf, dtype=stored, count=count, offset=data_start + begin)
        if (data_start + begin) % stored.itemsize:  # unaligned view: copy for speed
            arr = arr.copy()
        if dtype_name == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)  # bfloat16 is the top half of a float32
        elif dtype_name == "BOOL":
            if np.any(arr.view(np.uint8) > 1):
                raise SafetensorsError(f"safetensors: {where}: tensor {_short(name)} is BOOL but holds bytes other than 0 and 1")
        elif not stored.isnative:
            arr = arr.astype(stored.newbyteorder("="))
        out[name] = arr.reshape(shape)
    return out


def load(data: bytes | bytearray, *, where: str = "<bytes>") -> dict[str, np.ndarray]:
    """Parse safetensors bytes held in memory; ``where`` names the source in error messages."""
    n = _header_length(bytes(data[:8]), len(data), where)
    _, entries = _parse_header(bytes(data[8 : 8 + n]), len(data) - 8 - n, where)
    return _to_arrays(bytearray(data[8 + n :]), 0, entries, where)  # a writable copy of the data part


def read_header(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, tuple[str, tuple[int, ...]]]]:
    """Read only the header: (metadata, {name: (dtype_name, shape)}), validated against the file size."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = _header_length(f.read(8), size, str(path))
        metadata, entries = _parse_header(f.read(n), size - 8 - n, str(path))
    return metadata, {name: (dt, shape) for name, dt, shape, _, _ in entries}


def load_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` dict of a safetensors file ({} when it has none)."""
    return read_header(path)[0]


def load_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every tensor of a safetensors file into NumPy arrays (name -> array).

    The arrays are writable views into one buffer holding the file's data (no
    second copy). BF16 tensors come back as float32. Any inconsistency between
    the header and the file raises ``SafetensorsError`` (a ValueError) naming the file and the tensor.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        n = _header_length(f.read(8), size, str(path))
        head = f.read(n)
        _, entries = _parse_header(head, size - 8 - n, str(path))
        buf = bytearray(size - 8 - n)
        got = f.readinto(buf)
    if got != len(buf):
        raise SafetensorsError(f"safetensors: {path}: read {got} of {len(buf)} data bytes; the file changed while reading")
    return _to_arrays(buf, 0, entries, str(path))
