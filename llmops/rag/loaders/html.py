"""HTML files: the title and the visible text, with block elements as line breaks. The
markup is fed to the parser in blocks, and a file still parsing after ``timeout_s`` is skipped
and reported (Python's HTMLParser is slow on some malformed markup)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from llmops.rag.loaders.base import Deadline, read_text, setting
from llmops.registry import register
from llmops.types import Document

_HIDDEN = frozenset("script style head nav noscript template svg iframe".split())
_BLOCK = frozenset(
    "p div br hr li ul ol dl dd dt tr table thead tbody section article aside main header footer"
    " h1 h2 h3 h4 h5 h6 pre blockquote figure figcaption form fieldset details summary".split()
)
_CELL = frozenset({"td", "th"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._hidden = 0
        self._pre = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = not self.title  # the first <title> only (not an <svg>'s)
        elif tag in _HIDDEN:
            self._hidden += 1
        elif tag in _CELL:
            self.parts.append(" ")
        elif tag in _BLOCK:
            self._pre += tag == "pre"
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCK:
            self._pre = max(0, self._pre - (tag == "pre"))
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._hidden:
            # Source line breaks are plain whitespace in HTML, except inside <pre>.
            self.parts.append(data if self._pre else re.sub(r"\s+", " ", data))


_BLOCK_CHARS = 1 << 16


def html_to_text(markup: str, deadline: Deadline | None = None) -> tuple[str, str]:
    """(title, visible text) of an HTML page; ``deadline`` is checked between blocks."""
    parser = _TextExtractor()
    for start in range(0, len(markup), _BLOCK_CHARS):
        if deadline is not None:
            deadline.check()
        parser.feed(markup[start : start + _BLOCK_CHARS])
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return " ".join(parser.title.split()), text


@register("loader", "html", summary="HTML (.html .htm): title and visible text")
class HtmlLoader:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        timeout_s: float = Field(
            60.0, gt=0, description="Parsing one file longer than this skips it."
        )

    extensions = (".html", ".htm")

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()

    def load(self, path: Path, source: str) -> list[Document]:
        where = setting("html", path.suffix.lower() or ".html", "timeout_s")
        deadline = Deadline(self.config.timeout_s, source, where)
        title, text = html_to_text(read_text(path, source), deadline)
        if not text:
            return []
        body = f"{title}\n\n{text}" if title and not text.startswith(title) else text
        return [
            Document(
                id=source, text=body, source=source, metadata={"title": title} if title else {}
            )
        ]
