"""Every component contract on one screen. The docstrings are the spec.

Components are built from config by ``llmops.build``. Constructors are cheap (no I/O);
``start()`` loads weights, opens clients and checks health; ``close()`` undoes it.
CPU-bound work (loading, chunking, embedding) is sync; network I/O (generators) is async.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from llmops.types import Chunk, Document, Generation, GenerationRequest, ScoredChunk

Vectors = npt.NDArray[np.float32]
"""A 2-D float32 array, one row per text."""

TokenCounter = Callable[[Sequence[str]], list[int]]
"""Counts tokens of each text with the embedder's own tokenizer."""


@runtime_checkable
class Loader(Protocol):
    """Parses one file into documents.

    ``extensions`` lists the file suffixes (lower case, with the dot) it handles by default.
    ``load`` raises ``LoadError`` for an unreadable or malformed file; it never returns partial
    garbage. Document ids must be stable: derived from ``source`` (the path as given) and the
    position inside the file (page, record, row).
    """

    extensions: tuple[str, ...]

    def load(self, path: Path, source: str) -> list[Document]: ...


@runtime_checkable
class Chunker(Protocol):
    """Splits a document into chunks with stable ids (see ``llmops.rag.chunkers.make_chunk``).

    Chunk metadata carries the document's metadata plus what the chunker knows (heading path).
    """

    def split(self, document: Document) -> list[Chunk]: ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-comparable vectors.

    ``fingerprint`` identifies the model and every setting that changes vectors: when it changes,
    the index is rebuilt. ``dimension`` and ``max_seq_length`` are valid after ``start()``.
    Texts longer than ``max_seq_length`` tokens are truncated by the model; callers warn.
    """

    @property
    def fingerprint(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_seq_length(self) -> int: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def embed_documents(self, texts: Sequence[str]) -> Vectors: ...

    def embed_queries(self, texts: Sequence[str]) -> Vectors: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


@runtime_checkable
class VectorStore(Protocol):
    """Stores chunk vectors in named collections and searches them by cosine similarity.

    Every method takes the collection name, so an index can be rebuilt into a new collection
    while queries keep reading the old one. ``upsert`` is idempotent by chunk id.
    ``where`` is a store-native filter produced by ``llmops.rag.filters``.
    ``search`` takes one row per query and returns one hit list per query, best first (score:
    cosine similarity); ``rank`` is the same search without reading the chunks (ids and cosine
    similarities), for deep candidate lists whose chunks come from elsewhere. ``vectors``
    returns the stored vectors of ``ids`` by id (MMR); an id the store does not hold (deleted,
    or not written yet by a running ingestion) is left out.
    ``namespace`` prefixes the names of the collections this app creates.
    """

    namespace: str

    def start(self) -> None: ...

    def close(self) -> None: ...

    def upsert(self, collection: str, chunks: Sequence[Chunk], vectors: Vectors) -> None: ...

    def delete(self, collection: str, ids: Sequence[str]) -> None: ...

    def search(
        self,
        collection: str,
        queries: Vectors,
        top_k: int,
        where: Mapping[str, Any] | None = None,
    ) -> list[list[ScoredChunk]]: ...

    def rank(
        self,
        collection: str,
        queries: Vectors,
        top_k: int,
        where: Mapping[str, Any] | None = None,
    ) -> list[list[tuple[str, float]]]: ...

    def vectors(self, collection: str, ids: Sequence[str]) -> dict[str, Vectors]: ...

    def count(self, collection: str) -> int: ...

    def ids(self, collection: str) -> set[str]: ...

    def collections(self) -> list[str]: ...

    def drop(self, collection: str) -> None: ...


ChunkFilter = Callable[[Mapping[str, Any]], bool]
"""A predicate on a chunk's metadata (``llmops.rag.filters.matches`` bound to a parsed filter)."""


@runtime_checkable
class SparseIndex(Protocol):
    """A keyword (BM25) index over chunk texts, kept in step with the vector store.

    Same collections and chunk ids as the ``VectorStore``: ingestion calls ``upsert`` and
    ``delete`` beside the store's, so a small change never needs a rebuild. The index is
    persisted under the app's data dir and survives restarts. ``search`` takes one query text
    per row and returns one hit list per query, best first, scores higher-is-better (BM25);
    ``where`` keeps only chunks whose metadata it accepts, applied before cutting to ``top_k``.
    Chunks that share no term with the query are never returned. ``chunks`` returns the indexed
    chunks of ``ids`` by id (an id it does not hold is left out).
    """

    def start(self) -> None: ...

    def close(self) -> None: ...

    def upsert(self, collection: str, chunks: Sequence[Chunk]) -> None: ...

    def delete(self, collection: str, ids: Sequence[str]) -> None: ...

    def search(
        self,
        collection: str,
        queries: Sequence[str],
        top_k: int,
        where: ChunkFilter | None = None,
    ) -> list[list[ScoredChunk]]: ...

    def chunks(self, collection: str, ids: Sequence[str]) -> dict[str, Chunk]: ...

    def count(self, collection: str) -> int: ...

    def ids(self, collection: str) -> set[str]: ...

    def collections(self) -> list[str]: ...

    def drop(self, collection: str) -> None: ...


@runtime_checkable
class Reranker(Protocol):
    """Re-scores retrieved chunks against the query (a cross-encoder) and returns the best
    ``top_k`` of them, best first, each with the reranker's score. CPU-bound and sync.
    ``top_n`` is how many of a search's best candidates the query pipeline hands it."""

    top_n: int

    def start(self) -> None: ...

    def close(self) -> None: ...

    def rerank(self, query: str, hits: Sequence[ScoredChunk], top_k: int) -> list[ScoredChunk]: ...


@runtime_checkable
class Generator(Protocol):
    """Answers a question from retrieved context.

    ``generate`` returns the whole answer. ``stream`` yields the answer's text as it is
    produced (``str`` pieces), then exactly one ``Generation`` whose ``text`` is the pieces
    joined. A failure before the first piece raises ``BackendError``; a failure after it raises
    ``BackendError`` from the iterator. Closing the iterator early (``aclose()``, or cancelling
    the task that consumes it) stops the backend's work and frees its connection.

    ``Generation.cited`` lists the context positions the answer cites. A generator that finds
    the context irrelevant says so and sets ``abstained``. ``uses_prompt`` is False for
    generators that ignore ``request.prompt`` (it is then not rendered). Both methods retry
    transient backend errors and give up within the configured timeout. A ``start`` that
    fails (server down, model missing) closes whatever it opened before raising.
    """

    name: str
    uses_prompt: bool

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def generate(self, request: GenerationRequest) -> Generation: ...

    def stream(self, request: GenerationRequest) -> AsyncGenerator[str | Generation, None]: ...
