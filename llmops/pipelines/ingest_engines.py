"""Where an ingestion loads, chunks and embeds its changed files: the ``ingest.engine`` setting.

The ingestion itself (discovery, the records, every write to the indexes, crash safety) is the
same whichever engine runs: an engine only turns the files to (re)index into embedded batches.

- ``local``: threads of this process: the next batch is loaded and chunked while this one
  embeds (``LocalEngine``);
- ``ray``: actors of a Ray cluster, each building its own loaders, chunker and embedder from
  the validated config (``llmops.pipelines.ingest_ray``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar

from llmops.build import AppSpec
from llmops.pipelines.discovery import SourceFile
from llmops.pipelines.prefetch import prefetched
from llmops.pipelines.prepare import PreparedFile
from llmops.protocols import Vectors

T = TypeVar("T")
Batch = list[PreparedFile]
"""Files embedded and committed together."""
EmbeddedBatch = tuple[Batch, Vectors | None]
"""A batch and its chunks' vectors, in chunk order (None when it has no chunks)."""


class IngestEngine(Protocol):
    """Loads, chunks and embeds the files an ingestion (re)indexes."""

    def embedded(
        self, files: Sequence[SourceFile], batch_chunks: int
    ) -> AbstractContextManager[Iterator[EmbeddedBatch]]:
        """Every file of ``files`` once, prepared and embedded, in batches of about
        ``batch_chunks`` chunks (a file is never split across batches), in any order. Leaving
        the ``with`` block early stops the work still running."""
        ...


class LocalEngine:
    """The next batch is loaded and chunked on a producer thread while this one embeds."""

    def __init__(
        self,
        prepare: Callable[[SourceFile], PreparedFile],
        embed: Callable[[Batch], Vectors | None],
    ) -> None:
        self.prepare, self.embed = prepare, embed

    @contextmanager
    def embedded(
        self, files: Sequence[SourceFile], batch_chunks: int
    ) -> Iterator[Iterator[EmbeddedBatch]]:
        prepared = (self.prepare(f) for f in files)
        with prefetched(grouped(prepared, _chunk_count, batch_chunks)) as batches:
            yield ((batch, self.embed(batch)) for batch in batches)


def _chunk_count(p: PreparedFile) -> int:
    return len(p.chunks)


def grouped(items: Iterable[T], size: Callable[[T], int], limit: int) -> Iterator[list[T]]:
    """Consecutive items in lists whose sizes add up to at least ``limit`` (the last: less)."""
    group: list[T] = []
    total = 0
    for item in items:
        group.append(item)
        total += size(item)
        if total >= limit:
            yield group
            group, total = [], 0
    if group:
        yield group


def _ray(spec: AppSpec) -> IngestEngine:
    from llmops.pipelines.ingest_ray import RayEngine  # it imports this module

    return RayEngine(spec)


REMOTE_ENGINES: dict[str, Callable[[AppSpec], IngestEngine] | None] = {"local": None, "ray": _ray}
"""``ingest.engine`` → its engine's factory; None: the ingestion's own threads (``local``),
which use its started components."""


def remote_engine(spec: AppSpec) -> IngestEngine | None:
    """The engine ``ingest.engine`` names (None for ``local``)."""
    make = REMOTE_ENGINES[spec.loaded.app.ingest.engine]
    return None if make is None else make(spec)
