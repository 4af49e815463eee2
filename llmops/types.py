"""Frozen value types shared by every layer: documents, chunks, hits, messages, generations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Metadata = Mapping[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class Document:
    """A unit of loaded text: a file, a PDF page, a JSON record or a CSV row.

    ``id`` is stable across runs: derived from the source path and the position inside it.
    """

    id: str
    text: str
    source: str
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document that gets embedded and indexed.

    ``id`` is derived from the document id and the chunk's content, so an unchanged chunk keeps
    its id across re-ingestions.
    """

    id: str
    document_id: str
    text: str
    source: str
    index: int
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A retrieved chunk with the score that ranked it: cosine similarity (dense search), BM25
    (sparse), the fused score (hybrid) or a reranker's. ``similarity`` is the cosine similarity
    between the question and the chunk wherever it is known (dense and hybrid search): unlike a
    fused score it means the same in every query, so "is anything relevant?" reads it."""

    chunk: Chunk
    score: float
    similarity: float | None = None

    @property
    def relevance(self) -> float:
        """The similarity when known, else the score."""
        return self.score if self.similarity is None else self.similarity


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Per-request overrides of a generator's configured sampling; ``None`` keeps the config.

    ``adapter`` names a LoRA adapter for backends that serve several (``hf_local``; for vLLM
    the adapter is the ``model``).
    """

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    adapter: str | None = None


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Everything a generator gets for one answer.

    ``context`` is numbered from 1 in the order given; ``prompt`` is the rendered conversation
    (empty for generators that do not use one). ``deadline`` (``time.monotonic()`` seconds,
    None: none) is when the request must be answered: backends reached over a network stop
    retrying, and refuse to start, once it has passed.
    """

    question: str
    context: tuple[ScoredChunk, ...] = ()
    prompt: tuple[Message, ...] = ()
    options: GenerationOptions = field(default_factory=GenerationOptions)
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    """What a generator returns.

    ``cited`` holds the 1-based positions (in the context given to the generator) of the chunks
    the answer cites; ``abstained`` is True when the generator declined to answer.
    """

    text: str
    generator: str
    cited: tuple[int, ...] = ()
    abstained: bool = False
    usage: Usage = field(default_factory=Usage)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SourceRef:
    """One retrieved chunk as shown to the user; ``citation`` is its [n] in the answer."""

    citation: int
    document_id: str
    chunk_id: str
    source: str
    score: float
    snippet: str
    cited: bool
    page: int | None = None
    heading: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one question, with the sources it was drawn from."""

    question: str
    answer: str
    sources: tuple[SourceRef, ...]
    abstained: bool
    latency_ms: float
    request_id: str
    generator: str
    usage: Usage = field(default_factory=Usage)
    variant: str = "default"  # the experiment variant that served it
