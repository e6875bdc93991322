"""Atomic file writes: a file is either the old version or the complete new one.

The recipe (the one every database and package manager uses):

1. write the new bytes to a temporary file *in the same folder* as the target
   (``os.replace`` is only atomic within one file system);
2. ``flush`` Python's buffer and ``os.fsync`` the file, so the bytes are on disk
   before the name points at them;
3. ``os.replace(tmp, target)``: one rename, atomic on POSIX and Windows;
4. ``fsync`` the folder (POSIX), so the rename itself survives a power cut.

If anything raises before step 3 (a full disk, a bug in the caller's writer, a
Ctrl-C), the temporary file is removed and the target is untouched. A process
killed outright (``kill -9``, a power cut) cannot clean up, so every temporary
name carries the writer's process id: ``remove_stale_temps`` deletes those
whose writer is gone.

A *folder* (a checkpoint: weights + config.json) cannot be replaced by one
rename when the old one exists, so ``atomic_folder`` does it in three renames
with a state a crash can always finish or undo::

    .name.<pid>-<random>.tmp/   being written; garbage if its writer died
    name.new/                   complete; replaces name/ at the next step
    name.old/                   the previous name/, deleted once name/ is back

``completed_folder`` tells a reader which of them holds the newest complete copy.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["atomic_writer", "atomic_write_bytes", "atomic_write_text", "atomic_folder", "completed_folder",
           "finish_folder_swap", "remove_stale_temps"]

# .<name>.<pid>-<12 hex>.tmp (this module) or .<name>.<12 hex>.tmp (minilm before the pid was added)
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[0-9a-f]{12}\.tmp$")


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


def _temp_path(path: Path) -> Path:
    """A fresh temporary name next to ``path`` that says which process writes it."""
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (POSIX). Elsewhere we cannot ask safely, so: assume it does."""
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)          # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:      # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[str]:
    """Delete the temporary files and folders in ``folder`` whose writer process is gone; returns their names.

    Temps of a live process (this one included) are left alone. Names without a
    pid come from an older minilm, whose writer is certainly not running.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _TEMP_NAME.match(entry.name)
        if m is None or (m["pid"] is not None and _pid_alive(int(m["pid"]))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                entry.unlink()
            except FileNotFoundError:
                pass
        removed.append(entry.name)
    return removed


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
    tmp = _temp_path(path)
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


# ----- whole folders ------------------------------------------------------------------------
def _siblings(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".new"), path.with_name(path.name + ".old")


def completed_folder(path: str | os.PathLike) -> Path:
    """The newest complete copy of the folder ``path``: ``path.new``, else ``path``, else ``path.old``.

    Read-only (a reader must not write); returns ``path`` itself when none exists.
    ``path.new`` only ever appears complete (it is renamed from a finished temp),
    and it is newer than ``path``, so it wins while a swap is half done.
    """
    path = Path(path)
    new, old = _siblings(path)
    for candidate in (new, path, old):
        if candidate.is_dir():
            return candidate
    return path


def finish_folder_swap(path: str | os.PathLike) -> None:
    """Complete a swap that a crash interrupted, so that ``path`` holds the newest complete copy."""
    path = Path(path)
    new, old = _siblings(path)
    if new.is_dir():
        if path.is_dir():
            if old.exists():                 # older than path: path replaced it in an earlier swap
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(new, path)
        _fsync_folder(path.parent)
    if old.exists() and path.is_dir():
        shutil.rmtree(old)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder; when the block ends cleanly it replaces the folder ``path`` as a whole.

    Usage::

        with atomic_folder("run/checkpoint") as tmp:
            save_file(tensors, tmp / "model.safetensors")
            (tmp / "config.json").write_text(config)

    Until the block ends, ``path`` keeps the previous complete copy; a crash at any
    moment leaves a state ``completed_folder`` reads correctly and the next
    ``atomic_folder`` call finishes (see the module docstring). Temps of dead
    writers in the parent folder are removed first.
    """
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    finish_folder_swap(path)
    remove_stale_temps(parent)
    tmp = _temp_path(path)
    tmp.mkdir()
    try:
        yield tmp
        for entry in tmp.iterdir():          # the files' bytes reach the disk before any rename
            if entry.is_file():
                with open(entry, "rb") as f:
                    os.fsync(f.fileno())
        _fsync_folder(tmp)
        new, _ = _siblings(path)
        os.replace(tmp, new)                 # from here on the new copy counts as complete
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finish_folder_swap(path)
