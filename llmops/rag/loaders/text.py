"""Plain text and Markdown files: one document each."""

from __future__ import annotations

import re
from pathlib import Path

from llmops.rag.loaders.base import NoSettings, read_text
from llmops.registry import register
from llmops.types import Document

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*(?:\r?\n|\Z)", re.S | re.M)
_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.M)
_H1 = re.compile(r"^#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(title from a YAML front matter block, text without the block)."""
    front = _FRONT_MATTER.match(text)
    if not front:
        return None, text
    found = _TITLE.search(front.group(1))
    title = found.group(1).strip("'\"").strip() if found else ""
    return title or None, text[front.end() :]


def first_heading(text: str) -> str | None:
    """The first ``# `` heading outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := _H1.match(line)):
            return match.group(1)
    return None


def text_documents(source: str, text: str, title: str | None) -> list[Document]:
    """The file as one document, or none when it has no text."""
    if not text.strip():
        return []
    return [
        Document(id=source, text=text, source=source, metadata={"title": title} if title else {})
    ]


@register("loader", "text", summary="plain text files (.txt .rst .log)")
class TextLoader:
    Config = NoSettings
    extensions = (".txt", ".rst", ".log")

    def __init__(self, config: NoSettings | None = None) -> None:
        self.config = config or NoSettings()

    def load(self, path: Path, source: str) -> list[Document]:
        return text_documents(source, read_text(path, source), None)


@register(
    "loader", "markdown", summary="Markdown (.md); title from front matter or first # heading"
)
class MarkdownLoader:
    Config = NoSettings
    extensions = (".md", ".markdown")

    def __init__(self, config: NoSettings | None = None) -> None:
        self.config = config or NoSettings()

    def load(self, path: Path, source: str) -> list[Document]:
        title, text = split_front_matter(read_text(path, source))
        return text_documents(source, text, title or first_heading(text))
