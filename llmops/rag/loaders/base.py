"""Helpers every loader uses: reading text safely and a settings-free Config."""

from __future__ import annotations

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
