"""Helpers every loader uses: reading text safely, a settings-free Config, and a per-file
parse deadline."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from llmops.errors import LoadError


class NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


def read_text(path: Path, source: str) -> str:
    """UTF-8 text with ``\n`` line ends (a BOM is fine); binary or undecodable files raise
    LoadError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(source, f"cannot read file: {exc.strerror or exc}") from None
    if b"\x00" in data[:8192]:
        raise LoadError(source, "looks like a binary file (NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(source, f"not valid UTF-8 text (byte {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def setting(loader: str, extension: str, key: str) -> str:
    """Where a user raises a loader's limit ``key``, for error messages."""
    return f"sources[].loaders['{extension}'] = {{type: {loader}, {key}: ...}}"


class Deadline:
    """A per-file parse time limit, checked between steps (a page, a block of markup). Python
    cannot stop a parser in the middle of a call, so one step may run past it; the steps are
    kept small for that reason."""

    def __init__(self, seconds: float, source: str, key: str) -> None:
        """``key``: where the limit is set (``setting(...)``), named in the error."""
        self.seconds, self.source, self.key = seconds, source, key
        self._end = time.monotonic() + seconds

    def check(self) -> None:
        """LoadError once the time is up."""
        if time.monotonic() > self._end:
            raise LoadError(
                self.source,
                f"parsing took over {self.seconds:g} s, the limit: skipped (raise it: {self.key})",
            )
