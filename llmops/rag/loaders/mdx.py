"""MDX files (the docs of React, Docusaurus, Next.js): Markdown with ESM ``import`` / ``export``
blocks, JSX components and ``{expressions}``. The loader keeps the Markdown and the text inside
components; it drops the ESM blocks, the JSX tags, MDX comments (``{/*usage*/}``, the heading
anchors of the React docs) and custom heading ids (``{#usage}``). Code (fenced blocks and
inline spans) is kept as written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from llmops.deps import require
from llmops.rag.loaders.base import NoSettings, read_text
from llmops.rag.loaders.text import first_heading, split_front_matter, text_documents
from llmops.registry import register
from llmops.types import Document

_EXPRESSION = r"\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\}"  # braces nested up to three deep
_ATTRIBUTE = rf"""(?:[^\s"'{{}}<>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|{_EXPRESSION}))?|{_EXPRESSION})"""
_PARTS = {
    # an inline code span (no blank line inside): kept as written
    "code": r"(?P<code>(`+)(?:(?!\n[ \t]*\n).)*?(?<!`)\2(?!`))",
    # an ESM block: import/export starting a block (no text line before), up to a blank line
    "esm": r"^(?<![^\n]\n)(?:import|export)\b[^\n]*(?:\n(?![ \t]*(?:\n|\Z))[^\n]*)*",
    "comment": r"\{/\*.*?\*/\}|<!--.*?-->",
    "heading_id": r"[ \t]*\{#[\w:.-]+\}(?=[ \t]*$)",
    "tag": rf"</?[A-Za-z][\w.:-]*(?:\s+{_ATTRIBUTE})*\s*/?>|</?>",
}
_DROP = re.compile("|".join(_PARTS.values()), re.M | re.S)
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.M)
_BLANK_LINES = re.compile(r"\n{3,}")


def _fences(text: str) -> Iterator[tuple[int, int]]:
    """Line ranges ``[start, end)`` of the fenced code blocks, as CommonMark finds them; MDX
    has no indented code and no HTML blocks, so those rules are off."""
    markdown_it = require("markdown_it", "rag")
    parser = markdown_it.MarkdownIt("commonmark").disable(["code", "html_block"])
    for token in parser.parse(text):
        if token.type == "fence" and token.map:
            yield token.map[0], token.map[1]


def _strip(markdown: str) -> str:
    """``markdown`` (no fenced code in it) without the MDX-only syntax."""
    kept = _DROP.sub(lambda m: m.group("code") or "", markdown)
    return _BLANK_LINES.sub("\n\n", _TRAILING_SPACE.sub("", kept))


def mdx_to_markdown(text: str) -> str:
    """Plain Markdown from MDX: fenced code blocks unchanged, the rest stripped."""
    lines = text.splitlines(keepends=True)
    parts, done = [], 0
    for start, end in _fences(text):
        parts += [_strip("".join(lines[done:start])), "".join(lines[start:end])]
        done = end
    parts.append(_strip("".join(lines[done:])))
    return "".join(parts)


@register(
    "loader",
    "mdx",
    summary="MDX (.mdx): Markdown without imports, exports and JSX tags; text in components kept",
    extra="rag",
    requires=("markdown_it",),
)
class MdxLoader:
    Config = NoSettings
    extensions = (".mdx",)

    def __init__(self, config: NoSettings | None = None) -> None:
        self.config = config or NoSettings()

    def load(self, path: Path, source: str) -> list[Document]:
        title, text = split_front_matter(read_text(path, source))
        markdown = mdx_to_markdown(text)
        return text_documents(source, markdown, title or first_heading(markdown))
