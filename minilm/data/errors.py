"""Errors raised by the corpus loaders, with the fix in the message."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CorpusNotInstalledError"]


class CorpusNotInstalledError(FileNotFoundError):
    """A corpus that ships in a Debian package is not installed on this machine."""

    def __init__(self, corpus: str, package: str, missing: Path | str):
        self.corpus, self.package, self.missing = corpus, package, str(missing)
        super().__init__(
            f"corpus {corpus!r} needs the Debian package {package!r}, which is not installed "
            f"({self.missing} not found); install it with: "
            f"sudo apt-get update && sudo apt-get install -y {package}"
        )

    def __str__(self) -> str:  # FileNotFoundError's own __str__ would show only errno fields
        return self.args[0]
