"""Atomic file writes: a file is either the old version or the complete new one.

The recipe (the one every database and package manager uses):

1. write the new bytes to a temporary file *in the same folder* as the target
   (``os.replace`` is only atomic within one file system);
2. ``flush`` Python's buffer and ``os.fsync`` the file, so the bytes are on disk
   before the name points at them;
3. ``os.replace(tmp, target)``: one rename, atomic on POSIX and Windows;
4. ``fsync`` the folder (POSIX), so the rename itself survives a power cut.

If anything raises before step 3 (a full disk, a bug in the caller's writer, a
Ctrl-C), the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["atomic_writer", "atomic_write_bytes", "atomic_write_text"]


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary file object whose contents replace ``path`` only if the block ends cleanly.

    Usage::

        with atomic_writer("model.safetensors") as f:
            f.write(header)
            f.write(data)

    The temporary file is ``.<name>.<random>.tmp`` in the target's folder; it is
    created with mode 0o666 minus the umask, like a file made by ``open(path, "wb")``.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"atomic_writer: cannot write {str(path)!r}: the folder {str(folder)!r} does not exist")
    tmp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> None:
    """Replace the file at ``path`` with ``data`` atomically (see the module docstring)."""
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Replace the file at ``path`` with ``text`` encoded as ``encoding``, atomically."""
    atomic_write_bytes(path, text.encode(encoding))
