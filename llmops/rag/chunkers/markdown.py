"""Markdown-aware chunking: never crosses a heading; the heading path goes into metadata."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from llmops.protocols import TokenCounter
from llmops.rag.chunkers.base import make_chunks
from llmops.rag.chunkers.recursive import SizeConfig, make_splitter
from llmops.registry import register
from llmops.types import Chunk, Document, Metadata

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def sections(text: str) -> Iterator[tuple[list[str], str]]:
    """(heading path, body) for each section; ``#`` lines inside code fences are not headings."""
    path: list[tuple[int, str]] = []
    body: list[str] = []
    fence = ""  # the marker of the open code fence, if any
    for line in text.splitlines():
        if marker := _FENCE.match(line):
            opened = marker.group(1)
            if not fence:
                fence = opened
            elif opened[0] == fence[0] and len(opened) >= len(fence):
                fence = ""
        match = None if fence else _HEADING.match(line)
        if match:
            yield [title for _, title in path], "\n".join(body)
            level = len(match.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, match.group(2))]
            body = []
        else:
            body.append(line)
    yield [title for _, title in path], "\n".join(body)


class MarkdownConfig(SizeConfig):
    include_heading: bool = Field(True, description="Start each chunk with its heading path.")


@register(
    "chunker",
    "markdown",
    summary="Markdown sections split by headings, heading path kept in metadata",
    extra="rag",
    requires=("langchain_text_splitters",),
)
class MarkdownChunker:
    Config = MarkdownConfig

    def __init__(
        self, config: MarkdownConfig, *, token_counter: TokenCounter | None = None
    ) -> None:
        self.config = config
        self._splitters: dict[int, Any] = {}

    def _split(self, body: str, reserve: int) -> list[str]:
        """Split one section, leaving ``reserve`` characters for the heading line."""
        reserve = min(reserve, self.config.chunk_size - self.config.chunk_size // 2)
        if reserve not in self._splitters:
            self._splitters[reserve] = make_splitter(self.config, reserve=reserve)
        pieces: list[str] = self._splitters[reserve].split_text(body)
        return pieces

    def _pieces(self, document: Document) -> Iterator[tuple[str, Metadata]]:
        for headings, body in sections(document.text):
            if not body.strip():
                continue
            heading = " > ".join(headings)
            meta: Metadata = {"heading": heading} if heading else {}
            prefix = f"{heading}\n\n" if heading and self.config.include_heading else ""
            for piece in self._split(body, len(prefix)):
                yield prefix + piece, meta

    def split(self, document: Document) -> list[Chunk]:
        return make_chunks(document, self._pieces(document))
