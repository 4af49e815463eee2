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

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def sections(text: str) -> Iterator[tuple[list[str], str]]:
    """(heading path, body) for each section; ``#`` lines inside code fences are not headings."""
    path: list[tuple[int, str]] = []
    body: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
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
        self._splitter: Any = None

    def _pieces(self, document: Document) -> Iterator[tuple[str, Metadata]]:
        for headings, body in sections(document.text):
            if not body.strip():
                continue
            heading = " > ".join(headings)
            meta: Metadata = {"heading": heading} if heading else {}
            for piece in self._splitter.split_text(body):
                text = f"{heading}\n\n{piece}" if heading and self.config.include_heading else piece
                yield text, meta

    def split(self, document: Document) -> list[Chunk]:
        if self._splitter is None:
            self._splitter = make_splitter(self.config)
        return make_chunks(document, self._pieces(document))
