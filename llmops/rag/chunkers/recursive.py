"""Recursive character splitting (langchain-text-splitters) and its token-counted variant."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from llmops.deps import require
from llmops.protocols import TokenCounter
from llmops.rag.chunkers.base import make_chunks
from llmops.registry import register
from llmops.types import Chunk, Document


class SizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chunk_size: int = Field(1000, ge=50, description="Maximum chunk length (characters).")
    chunk_overlap: int = Field(100, ge=0, description="Shared text between neighbours.")
    separators: list[str] | None = Field(None, description="Split points, coarsest first.")

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, overlap: int, info: ValidationInfo) -> int:
        size = info.data.get("chunk_size")
        if size is not None and overlap >= size:
            raise ValueError(f"chunk_overlap ({overlap}) must be smaller than chunk_size ({size})")
        return overlap


def make_splitter(
    config: SizeConfig, length: TokenCounter | None = None, *, reserve: int = 0
) -> Any:
    """A RecursiveCharacterTextSplitter for ``config``; ``reserve`` shrinks the size (never
    below half) to leave room for text the caller adds to every chunk."""
    splitters = require("langchain_text_splitters", "rag")
    size = max(config.chunk_size - reserve, config.chunk_size // 2)
    kwargs: dict[str, Any] = {
        "chunk_size": size,
        "chunk_overlap": min(config.chunk_overlap, size - 1),
        "keep_separator": True,
        "strip_whitespace": True,
    }
    if config.separators:
        kwargs["separators"] = config.separators
    if length is not None:
        kwargs["length_function"] = lambda text: length([text])[0]
    return splitters.RecursiveCharacterTextSplitter(**kwargs)


@register(
    "chunker",
    "recursive",
    summary="recursive character splitting (paragraphs, lines, words)",
    extra="rag",
    requires=("langchain_text_splitters",),
)
class RecursiveChunker:
    Config = SizeConfig

    def __init__(self, config: SizeConfig, *, token_counter: TokenCounter | None = None) -> None:
        self.config = config
        self._splitter: Any = None

    def split(self, document: Document) -> list[Chunk]:
        if self._splitter is None:
            self._splitter = make_splitter(self.config)
        return make_chunks(document, ((t, {}) for t in self._splitter.split_text(document.text)))


class TokenConfig(SizeConfig):
    chunk_size: int = Field(256, ge=8, description="Maximum chunk length (tokens).")
    chunk_overlap: int = Field(32, ge=0, description="Shared tokens between neighbours.")


@register(
    "chunker",
    "token",
    summary="recursive splitting with sizes counted by the embedder's tokenizer",
    extra="rag",
    requires=("langchain_text_splitters",),
)
class TokenChunker:
    Config = TokenConfig

    def __init__(self, config: TokenConfig, *, token_counter: TokenCounter | None = None) -> None:
        if token_counter is None:
            raise ValueError("the token chunker needs the embedder's token counter")
        self.config = config
        self._count = token_counter
        self._splitter: Any = None

    def split(self, document: Document) -> list[Chunk]:
        if self._splitter is None:
            self._splitter = make_splitter(self.config, self._count)
        return make_chunks(document, ((t, {}) for t in self._splitter.split_text(document.text)))
