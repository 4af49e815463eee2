"""Plain text and Markdown files: one document each."""

from __future__ import annotations

import re
from pathlib import Path

from llmops.rag.loaders.base import NoSettings, read_text
from llmops.registry import register
from llmops.types import Document

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_H1 = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.M)


@register("loader", "text", summary="plain text files (.txt .rst .log)")
class TextLoader:
    Config = NoSettings
    extensions = (".txt", ".rst", ".log")

    def __init__(self, config: NoSettings | None = None) -> None:
        self.config = config

    def load(self, path: Path, source: str) -> list[Document]:
        text = read_text(path, source)
        return [Document(id=source, text=text, source=source)] if text.strip() else []


@register(
    "loader", "markdown", summary="Markdown (.md); title from front matter or first # heading"
)
class MarkdownLoader:
    Config = NoSettings
    extensions = (".md", ".markdown")

    def __init__(self, config: NoSettings | None = None) -> None:
        self.config = config

    def load(self, path: Path, source: str) -> list[Document]:
        text = read_text(path, source)
        title = None
        front = _FRONT_MATTER.match(text)
        if front:
            text = text[front.end() :]
            found = re.search(r"^title:\s*['\"]?(.+?)['\"]?\s*$", front.group(1), re.M)
            title = found.group(1) if found else None
        if title is None and (heading := _H1.search(text)):
            title = heading.group(1)
        if not text.strip():
            return []
        return [
            Document(
                id=source, text=text, source=source, metadata={"title": title} if title else {}
            )
        ]
