"""Fetch a corpus by URL once, check it against a pinned SHA-256, keep it in a local cache.

``download(url, sha256)`` is safe to interrupt and safe to trust:

1. if ``<cache>/<filename>`` exists and its SHA-256 is the pinned one, return it
   (no network at all);
2. otherwise stream the response into a hidden temporary file in the cache
   folder, hashing as it goes;
3. if the connection closed before ``Content-Length`` bytes arrived, or the
   hash is not the pinned one, delete the temporary file and raise;
4. only then rename it to its final name (atomic), so the cache never holds a
   partial or wrong file under the real name.

The cache folder is ``cache_dir``, else ``$MINILM_CACHE``, else ``~/.cache/minilm``.
A download stops as soon as it passes ``max_bytes`` (default 50 MB, ample for a
training corpus): a wrong URL or a hostile server cannot fill the disk.

``REGISTRY`` names the corpora ``load_corpus`` can fetch. To add one, download
the file once, compute ``sha256sum file`` yourself, and add a ``RemoteCorpus``
entry -- never an entry whose hash you have not checked.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "download",
    "fetch",
    "default_cache_dir",
    "sha256_of_file",
    "RemoteCorpus",
    "REGISTRY",
    "DownloadError",
    "ChecksumMismatchError",
]


class DownloadError(RuntimeError):
    """A download failed (network error, HTTP error, or the connection closed early)."""


class ChecksumMismatchError(DownloadError, ValueError):
    """The downloaded bytes are not the ones the pinned SHA-256 describes."""


@dataclass(frozen=True)
class RemoteCorpus:
    url: str
    sha256: str
    filename: str
    size: int  # bytes, for the description only: the hash is what is checked
    description: str


REGISTRY: dict[str, RemoteCorpus] = {
    # Karpathy's char-rnn "tiny shakespeare": 40,000 lines of Shakespeare's plays, 1,115,394 bytes, 65 distinct characters.
    "shakespeare": RemoteCorpus(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="tinyshakespeare.txt",
        size=1_115_394,
        description="tiny shakespeare (Karpathy's char-rnn): 1.1 MB of plays",
    ),
}

_HEX64 = re.compile(r"[0-9a-f]{64}")
DEFAULT_MAX_BYTES = 50_000_000


def default_cache_dir() -> Path:
    """``$MINILM_CACHE`` if set, else ``~/.cache/minilm``."""
    env = os.environ.get("MINILM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "minilm"


def sha256_of_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _filename_for(url: str, sha256: str, filename: str | None) -> str:
    if filename is None:
        base = os.path.basename(urllib.parse.urlparse(url).path) or "download"
        filename = f"{sha256[:12]}-{base}"  # the hash prefix keeps two "input.txt"s apart
    if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
        raise ValueError(f"download: filename must be a plain file name, got {filename!r}")
    return filename


def download(
    url: str,
    sha256: str,
    cache_dir: str | os.PathLike | None = None,
    filename: str | None = None,
    *,
    timeout: float = 60.0,
    chunk_size: int = 1 << 16,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Path:
    """Return the path of the cached, verified file at ``url`` (see the module docstring).

    More than ``max_bytes`` bytes (announced by Content-Length or received) is an error,
    raised before the rest is read.
    """
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256.lower()):
        raise ValueError(f"download: sha256 must be 64 hex digits, got {sha256!r}")
    if type(max_bytes) is not int or max_bytes <= 0:
        raise ValueError(f"download: max_bytes must be a positive int, got {max_bytes!r}")
    sha256 = sha256.lower()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache / _filename_for(url, sha256, filename)
    if target.is_file() and sha256_of_file(target) == sha256:
        return target  # cached and intact: no network
    cache.mkdir(parents=True, exist_ok=True)

    tmp = cache / f".{target.name}.{secrets.token_hex(6)}.part"
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None and length.strip().isdigit() else None
            if expected is not None and expected > max_bytes:
                raise DownloadError(f"download: {url} is {expected} bytes, more than the {max_bytes}-byte "
                                    "limit (max_bytes); nothing was cached")
            h = hashlib.sha256()
            while chunk := response.read(chunk_size):
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadError(f"download: {url} sent more than the {max_bytes}-byte limit "
                                        "(max_bytes); stopped reading, nothing was cached")
                f.write(chunk)
                h.update(chunk)
            f.flush()
            os.fsync(f.fileno())
        if expected is not None and received != expected:
            raise DownloadError(
                f"download: {url}: the connection closed after {received} of {expected} bytes "
                "(interrupted download); nothing was cached, try again"
            )
        got = h.hexdigest()
        if got != sha256:
            raise ChecksumMismatchError(
                f"download: {url}: SHA-256 mismatch: expected {sha256}, got {got} ({received} bytes). "
                "The file changed upstream or the transfer was corrupted; nothing was cached"
            )
        os.replace(tmp, target)
    except DownloadError:
        raise
    except http.client.IncompleteRead as e:
        raise DownloadError(
            f"download: {url}: the connection closed after {received + len(e.partial)} bytes, "
            f"{e.expected} more were expected (interrupted download); nothing was cached, try again"
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        # URLError's str() wraps its reason in "<urlopen error ...>"; HTTPError's names the status
        reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", None) or e
        raise DownloadError(
            f"download: {url}: {reason}; nothing was cached. Offline? Fetch the file elsewhere and "
            f"put it at {target} (it is checked against its SHA-256), or pass a local file path instead"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)
    return target


def fetch(name: str, cache_dir: str | os.PathLike | None = None, **kwargs) -> Path:
    """Download (once) the registered corpus ``name``; returns the cached path."""
    if name not in REGISTRY:
        raise KeyError(f"fetch: no registered corpus {name!r}; known: {', '.join(sorted(REGISTRY)) or '(none)'}")
    entry = REGISTRY[name]
    return download(entry.url, entry.sha256, cache_dir, entry.filename, **kwargs)
