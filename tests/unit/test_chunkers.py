"""Chunkers: stable ids, heading paths, size limits and overlap validation."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from llmops import registry
from llmops.protocols import Chunker
from llmops.rag.chunkers.markdown import MarkdownChunker, MarkdownConfig, sections
from llmops.rag.chunkers.recursive import RecursiveChunker, SizeConfig, TokenChunker, TokenConfig
from llmops.types import Chunk, Document

DOC = """Preamble before any heading.

# Guide

Intro paragraph about the guide.

## Install

Run the installer.

```bash
# this is a comment, not a heading
make up
```

## Use

### Query

Ask a question.

## C#

Sharp notes.
"""


def _markdown(size: int = 200, overlap: int = 20, **extra: bool) -> MarkdownChunker:
    return MarkdownChunker(MarkdownConfig(chunk_size=size, chunk_overlap=overlap, **extra))


def _by_heading(chunks: list[Chunk]) -> dict[str | None, list[Chunk]]:
    grouped: dict[str | None, list[Chunk]] = {}
    for chunk in chunks:
        heading = chunk.metadata.get("heading")
        grouped.setdefault(heading if isinstance(heading, str) else None, []).append(chunk)
    return grouped


def test_import_registers_every_chunker() -> None:
    import llmops.rag.chunkers  # noqa: F401

    assert set(registry.names("chunker")) >= {"recursive", "markdown", "token"}
    assert registry.get("chunker", "markdown").config is MarkdownConfig
    assert issubclass(MarkdownConfig, SizeConfig) and issubclass(TokenConfig, SizeConfig)
    assert isinstance(_markdown(), Chunker)


def test_sections_follow_headings_and_ignore_code_fences() -> None:
    found = [(" > ".join(path), body.strip()) for path, body in sections(DOC) if body.strip()]
    assert [path for path, _ in found] == [
        "",
        "Guide",
        "Guide > Install",
        "Guide > Use > Query",
        "Guide > C#",
    ]
    assert "# this is a comment, not a heading" in found[2][1]


def test_markdown_chunks_keep_heading_path_and_never_cross_headings() -> None:
    document = Document("g.md", DOC, "g.md", {"title": "Guide"})
    chunks = _markdown().split(document)
    assert [c.metadata.get("heading") for c in chunks] == [
        None,
        "Guide",
        "Guide > Install",
        "Guide > Use > Query",
        "Guide > C#",
    ]
    assert "heading" not in chunks[0].metadata and chunks[0].text == "Preamble before any heading."
    assert chunks[2].text.startswith("Guide > Install\n\nRun the installer.")
    assert "make up" in chunks[2].text and "Ask" not in chunks[2].text
    assert all(c.metadata["title"] == "Guide" for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.document_id == "g.md" and c.source == "g.md" for c in chunks)


def test_long_sections_are_split_within_size_and_heading() -> None:
    body = " ".join(f"install{i}" for i in range(150))
    text = f"# Top\n\n## Install\n\n{body}\n\n## Next\n\nOther words."
    chunks = _markdown(size=120, overlap=0).split(Document("d", text, "d"))
    groups = _by_heading(chunks)
    assert set(groups) == {"Top > Install", "Top > Next"}
    assert len(groups["Top > Install"]) > 5
    assert all(len(c.text) <= 120 for c in chunks)
    assert all(c.text.startswith("Top > Install\n\n") for c in groups["Top > Install"])
    assert not any("Other words" in c.text for c in groups["Top > Install"])
    assert not any("install1" in c.text for c in groups["Top > Next"])


def test_include_heading_false_keeps_text_as_is() -> None:
    chunks = _markdown(include_heading=False).split(Document("g.md", DOC, "g.md"))
    assert chunks[2].text.startswith("Run the installer.")
    assert chunks[2].metadata["heading"] == "Guide > Install"


def test_ids_are_stable_when_other_sections_change() -> None:
    before = _markdown().split(Document("g.md", DOC, "g.md"))
    edited = DOC.replace("Intro paragraph about", "A rewritten intro for")
    after = _markdown().split(Document("g.md", edited, "g.md"))
    assert len(before) == len(after)
    assert before[1].id != after[1].id
    assert [c.id for c in before[2:]] == [c.id for c in after[2:]]
    assert before[0].id == after[0].id
    assert [c.id for c in before] == [
        c.id for c in _markdown().split(Document("g.md", DOC, "g.md"))
    ]


def test_ids_depend_on_the_document() -> None:
    a = RecursiveChunker(SizeConfig()).split(Document("a", "same text", "a"))
    b = RecursiveChunker(SizeConfig()).split(Document("b", "same text", "b"))
    assert a[0].text == b[0].text and a[0].id != b[0].id


def test_repeated_text_gets_distinct_ids() -> None:
    paragraph = "The same boilerplate paragraph, repeated verbatim."
    text = f"{paragraph}\n\n{paragraph}\n\n{paragraph}"
    chunks = RecursiveChunker(SizeConfig(chunk_size=60, chunk_overlap=0)).split(
        Document("d", text, "d")
    )
    assert [c.text for c in chunks] == [paragraph] * 3
    assert len({c.id for c in chunks}) == 3


def test_recursive_respects_size_and_overlap() -> None:
    text = " ".join(f"word{i}" for i in range(400))
    chunks = RecursiveChunker(SizeConfig(chunk_size=100, chunk_overlap=30)).split(
        Document("d", text, "d")
    )
    assert len(chunks) > 10 and all(len(c.text) <= 100 for c in chunks)
    assert chunks[0].text.split()[-1] in chunks[1].text.split()  # neighbours share words
    assert chunks[0].text.startswith("word0 ") and chunks[-1].text.endswith("word399")


def test_recursive_custom_separators() -> None:
    text = ";".join(f"item number {i}" for i in range(30))
    config = SizeConfig(chunk_size=60, chunk_overlap=0, separators=[";"])
    chunks = RecursiveChunker(config).split(Document("d", text, "d"))
    assert len(chunks) > 5 and all(len(c.text) <= 60 for c in chunks)
    # Split only at ";" (never inside "item number N"), so every item survives whole.
    items = {item for c in chunks for item in c.text.split(";") if item}
    assert items == {f"item number {i}" for i in range(30)}


def _words(texts: Sequence[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def test_token_chunker_counts_with_the_given_counter() -> None:
    text = " ".join(f"w{i}" for i in range(200))
    chunker = TokenChunker(TokenConfig(chunk_size=30, chunk_overlap=5), token_counter=_words)
    chunks = chunker.split(Document("d", text, "d"))
    assert all(len(c.text.split()) <= 30 for c in chunks)
    assert max(len(c.text.split()) for c in chunks) >= 25  # sized by words, not characters
    assert len(chunks) >= 7
    covered = {w for c in chunks for w in c.text.split()}
    assert covered == set(text.split())


def test_token_chunker_needs_a_counter() -> None:
    with pytest.raises(ValueError, match="token counter"):
        TokenChunker(TokenConfig())


@pytest.mark.parametrize("config", [SizeConfig, MarkdownConfig, TokenConfig])
@pytest.mark.parametrize("overlap", [100, 150])
def test_overlap_must_be_below_size(config: type[SizeConfig], overlap: int) -> None:
    with pytest.raises(ValidationError) as caught:
        config(chunk_size=100, chunk_overlap=overlap)
    (error,) = caught.value.errors()
    assert error["loc"] == ("chunk_overlap",)
    assert f"chunk_overlap ({overlap}) must be smaller than chunk_size (100)" in error["msg"]


def test_size_bounds_and_unknown_keys() -> None:
    assert SizeConfig().chunk_size == 1000 and TokenConfig().chunk_size == 256
    assert MarkdownConfig().include_heading is True
    with pytest.raises(ValidationError) as caught:
        SizeConfig(chunk_size=10, chunk_overlap=0)
    assert caught.value.errors()[0]["loc"] == ("chunk_size",)
    with pytest.raises(ValidationError):
        MarkdownConfig(chunk_sise=100)  # type: ignore[call-arg]
