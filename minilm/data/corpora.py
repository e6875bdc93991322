"""Text to train on, offline: corpora that ship with Python, with Debian, or sit in a local folder.

``load_corpus(name_or_path) -> str``:

===============  ==================================================================  ================
name             what                                                                needs
===============  ==================================================================  ================
``pydoc``        Python's help topics (``pydoc_data.topics``), English prose, ~0.5 MB  Python
``stdlib``       the standard library's ``.py`` sources, ~12 MB of code              Python
``wordnet``      WordNet definitions and example sentences, one per line, ~8.8 MB    ``wordnet-base``
``fortunes``     quotations and jokes from ``fortune``, ~2.4 MB                      ``fortunes``
``fortunes-zh``  Chinese poems (Tang, Song) and sayings, ~1.0 M characters           ``fortunes-zh``
a path           a UTF-8 text file, or every file under a folder                     --
a registered     a corpus fetched once by URL and cached (``minilm.data.download``)  network, once
download name
===============  ==================================================================  ================

Documents (topics, files, fortunes) are joined with one blank line between
them (each document's own trailing newlines removed first), so the text splits
cleanly on ``"\\n\\n"``. Everything is deterministic: same machine, same text.
A name is looked up before a path: pass a ``pathlib.Path`` to force a path.
"""

from __future__ import annotations

import codecs
import os
import re
import sysconfig
from pathlib import Path

from pydoc_data.topics import topics

from minilm.data.download import REGISTRY, fetch
from minilm.data.errors import CorpusNotInstalledError
from minilm.data.wordnet import WORDNET_DIR, wordnet_text

__all__ = ["load_corpus", "list_corpora", "pydoc_text", "stdlib_text", "fortune_records", "fortunes_zh_records",
           "read_text_path", "FORTUNES_DIR", "FORTUNES_ZH_FILES"]

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# `fortunes-zh` installs its files into the same folder as the English ones; they are kept
# out of the English corpus and make up their own.
FORTUNES_ZH_FILES = ("chinese", "song100", "tang300")
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")      # fortunes-zh colours each title and author line
_STDLIB_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def _join_documents(documents) -> str:
    return "\n\n".join(d.rstrip("\n") for d in documents) + "\n"


def pydoc_text() -> str:
    """Python's interactive-help topics (the language reference in prose), topics in sorted key order."""
    return _join_documents(topics[key].strip("\n") for key in sorted(topics))


def _stdlib_files(root: Path) -> list[Path]:
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _STDLIB_SKIP_DIRS)
        files.extend(Path(folder) / n for n in sorted(names) if n.endswith(".py"))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _cap(text: str, max_chars: int | None) -> str:
    """At most ``max_chars`` characters of ``text``, cut after the last whole line that fits (a prefix of ``text``)."""
    if max_chars is None or len(text) <= max_chars:
        return text
    room = text[:max_chars]
    end = room.rfind("\n")
    return room[: end + 1] if end >= 0 else room


def stdlib_text(max_chars: int | None = None) -> str:
    """The standard library's Python sources (no tests, no site-packages), files in sorted path order.

    With ``max_chars`` only as many files are read as needed, and the text is cut
    after the last whole line within ``max_chars`` characters.
    """
    if max_chars is not None and max_chars <= 0:
        raise ValueError(f"stdlib_text: max_chars must be positive, got {max_chars}")
    root = Path(sysconfig.get_paths()["stdlib"])
    documents: list[str] = []
    total = 0
    for path in _stdlib_files(root):
        documents.append(_read_utf8(path))
        total += len(documents[-1]) + 2
        if max_chars is not None and total >= max_chars:
            break
    return _cap(_join_documents(documents), max_chars)


def _not_utf8(path: Path, data: bytes, e: UnicodeDecodeError) -> ValueError:
    return ValueError(
        f"load_corpus: {path} is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 4]!r}); "
        "convert it (e.g. iconv -f latin1 -t utf-8) or remove it from the folder"
    )


def _read_utf8(path: Path, max_chars: int | None = None) -> str:
    """The text of a UTF-8 file, or only its first ``max_chars`` characters.

    With ``max_chars`` at most 4 * max_chars bytes are read (a UTF-8 character is 1 to 4
    bytes), so 20,000 characters of a 300 MB file cost kilobytes, not the whole file.
    """
    if max_chars is None:
        data = path.read_bytes()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _not_utf8(path, data, e) from None
    with open(path, "rb") as f:
        data = f.read(4 * max_chars)
    try:
        # final=False holds back a character cut in half at the end of what was read
        return codecs.getincrementaldecoder("utf-8")().decode(data)[:max_chars]
    except UnicodeDecodeError as e:
        head = data[: e.start].decode("utf-8")
        if len(head) >= max_chars:          # the bad byte lies past the characters we keep
            return head[:max_chars]
        raise _not_utf8(path, data, e) from None


def read_text_path(path: str | os.PathLike, max_chars: int | None = None) -> str:
    """A UTF-8 text file as is, or every non-hidden file under a folder (sorted by relative path), joined.

    With ``max_chars`` only what is needed is read: the result's first ``max_chars``
    characters are those of the whole text, and the files past them are never opened.
    """
    path = Path(path)
    if path.is_file():
        return _read_utf8(path, None if max_chars is None else max_chars + 1)
    if path.is_dir():
        files = sorted(
            (p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        if not files:
            raise ValueError(f"load_corpus: the folder {path} holds no files")
        if max_chars is None:
            return _join_documents(_read_utf8(p) for p in files)
        documents: list[str] = []
        used = 0
        for p in files:
            room = max_chars - used + 1          # one more than fits: tells a whole file from a cut one
            if room <= 0:                        # the separator already runs past the window
                return "\n\n".join(d.rstrip("\n") for d in documents) + "\n\n"
            text = _read_utf8(p, room)
            if len(text) >= room:                # cut: the window ends inside this file, keep it unstripped
                return "\n\n".join([d.rstrip("\n") for d in documents] + [text])
            documents.append(text)
            used += len(text.rstrip("\n")) + 2
        return _join_documents(documents)
    if path.exists():
        raise ValueError(f"load_corpus: {path} is neither a regular file nor a folder")
    raise FileNotFoundError(f"load_corpus: {path} is neither a file nor a folder")


def fortune_records(root: str | Path = FORTUNES_DIR, names: tuple[str, ...] | None = None) -> list[str]:
    """Every record of every fortune file (records are separated by lines holding only ``%``).

    Skips the binary ``.dat`` index files and sub-folders (``off/`` holds the
    offensive set of ``fortunes-off``); reads ``x.u8`` (the UTF-8 copy) in place
    of ``x`` where both exist. ``names``: only these files; by default every
    file except the Chinese ones of ``fortunes-zh`` (see ``fortunes_zh_records``).
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusNotInstalledError("fortunes", "fortunes", root)
    if names is None:
        names = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix not in (".dat", ".u8")
                       and p.name not in FORTUNES_ZH_FILES)
    # ``x.u8`` is the UTF-8 version of ``x`` (usually a symlink to it): prefer it when present.
    files = [root / (n + ".u8") if (root / (n + ".u8")).is_file() else root / n for n in names]
    if not files:
        raise CorpusNotInstalledError("fortunes", "fortunes", root / "fortunes")
    records: list[str] = []
    for path in files:
        record: list[str] = []
        for line in _read_utf8(path).splitlines():
            if line == "%":
                records.append("\n".join(record).strip("\n"))
                record = []
            else:
                record.append(line)
        records.append("\n".join(record).strip("\n"))
    return [r for r in records if r.strip()]


def fortunes_zh_records(root: str | Path = FORTUNES_DIR) -> list[str]:
    """The records of ``fortunes-zh`` (Tang and Song poems, sayings), ANSI colour codes removed."""
    root = Path(root)
    if not all((root / name).is_file() for name in FORTUNES_ZH_FILES):
        raise CorpusNotInstalledError("fortunes-zh", "fortunes-zh", root / FORTUNES_ZH_FILES[0])
    records = fortune_records(root, names=FORTUNES_ZH_FILES)
    return [r for r in (_ANSI_COLOUR.sub("", r).strip("\n") for r in records) if r.strip()]


def _fortunes_text() -> str:
    return _join_documents(fortune_records())


def _fortunes_zh_text() -> str:
    return _join_documents(fortunes_zh_records())


def _wordnet_corpus() -> str:
    return wordnet_text()


_BUILTIN = {
    "pydoc": (pydoc_text, "Python's help topics: ~0.5 MB of English prose (ships with Python)"),
    "stdlib": (stdlib_text, "the standard library's .py sources: ~12 MB of code (ships with Python)"),
    "wordnet": (_wordnet_corpus, "WordNet 3.0 definitions and examples, one per line: ~8.8 MB (apt-get install wordnet-base)"),
    "fortunes": (_fortunes_text, "fortune-cookie quotations: ~2.4 MB (apt-get install fortunes)"),
    "fortunes-zh": (_fortunes_zh_text, "Chinese poems (Tang, Song) and sayings: ~1.0 M characters, ~6,200 distinct (apt-get install fortunes-zh)"),
}
_INSTALLED = {
    "pydoc": lambda: True,
    "stdlib": lambda: True,
    "wordnet": lambda: (WORDNET_DIR / "data.noun").is_file(),
    "fortunes": lambda: FORTUNES_DIR.is_dir(),
    "fortunes-zh": lambda: all((FORTUNES_DIR / name).is_file() for name in FORTUNES_ZH_FILES),
}


def list_corpora() -> dict[str, str]:
    """Corpus name -> one-line description, with ``[not installed]`` / ``[download]`` where it applies."""
    out = {}
    for name, (_, description) in _BUILTIN.items():
        out[name] = description + ("" if _INSTALLED[name]() else " [not installed]")
    for name, remote in REGISTRY.items():
        out[name] = f"{remote.description} [download, {remote.url}]"
    return out


def load_corpus(name_or_path: str | os.PathLike, *, max_chars: int | None = None) -> str:
    """The text of a built-in corpus, a registered download (fetched once, then cached), a file or a folder.

    ``max_chars`` keeps only the start of the text, cut after the last whole line that fits;
    files and folders are read only as far as needed.
    """
    if max_chars is not None and (type(max_chars) is not int or max_chars <= 0):
        raise ValueError(f"load_corpus: max_chars must be a positive int (or None for all), got {max_chars!r}")
    if isinstance(name_or_path, str):
        if name_or_path == "stdlib":
            return stdlib_text(max_chars)  # reads only the files it needs
        if name_or_path in _BUILTIN:
            return _cap(_BUILTIN[name_or_path][0](), max_chars)
        if name_or_path in REGISTRY:
            return _cap(_read_utf8(fetch(name_or_path)), max_chars)
    path = Path(name_or_path)
    if not path.exists():
        raise ValueError(
            f"load_corpus: {str(name_or_path)!r} is neither a known corpus ({', '.join(list_corpora())}) "
            "nor an existing file or folder"
        )
    return _cap(read_text_path(path, max_chars), max_chars)
