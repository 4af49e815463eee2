"""Ingestion: sources → documents → chunks → vectors → store, incrementally.

Unchanged files are skipped without loading or embedding; changed files are re-chunked and
re-embedded and their stale chunks deleted; removed files lose their chunks. When the chunking
or embedding settings change (or ``full`` is asked), everything is built into a new collection
that replaces the old one only when complete. See ``llmops.rag.indexing`` for crash safety.
"""

from __future__ import annotations

import errno
import fcntl
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from llmops import tracing
from llmops.build import Components
from llmops.db import storage_error
from llmops.errors import IngestError, StorageError
from llmops.pipelines.discovery import SourceFile, discover_files
from llmops.pipelines.ingest_engines import Batch, IngestEngine, LocalEngine
from llmops.pipelines.prefetch import write_behind
from llmops.pipelines.prepare import PreparedFile, no_loader, prepare_file
from llmops.protocols import SparseIndex, Vectors, VectorStore
from llmops.rag.indexing import FileRecord, IndexTarget

BATCH_CHUNKS = 512


@dataclass
class IngestProgress:
    files_total: int
    files_done: int = 0
    chunks_done: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def chunks_per_second(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.chunks_done / elapsed if elapsed > 0 else 0.0


ProgressFn = Callable[[IngestProgress], None]


@dataclass
class IngestReport:
    collection: str = ""
    rebuilt: bool = False
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks_embedded: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0
    embed_calls: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    parsers: dict[str, str] = field(default_factory=dict)
    oversize_chunks: int = 0
    longest_chunk_tokens: int = 0
    token_limit: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def oversize_warning(self) -> str | None:
        if not self.oversize_chunks:
            return None
        return (
            f"{self.oversize_chunks} of {self.chunks_embedded} chunks exceed the embedder's "
            f"{self.token_limit}-token limit (longest: {self.longest_chunk_tokens} tokens); the "
            "model truncates them when embedding. Lower chunker.chunk_size or use the token "
            "chunker."
        )


@contextmanager
def ingestion_lock(data_dir: Path) -> Iterator[None]:
    """One ingestion per app at a time, across processes."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "ingest.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestError(f"another ingestion of this app is running ({data_dir})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sparse_intact(c: Components, active: IndexTarget) -> bool:
    """False when the vector store lacks the active collection (its folder was moved aside as
    corrupt, or deleted), or the store has chunks in it but the sparse index has no such
    collection (its files were deleted, or it was switched on after the index was built): the
    next ingestion then rebuilds everything, as after a settings change."""
    if active.collection not in c.store.collections():
        return False
    if c.sparse is None or active.collection in c.sparse.collections():
        return True
    return c.store.count(active.collection) == 0


class Ingestion:
    """One run of the ingest pipeline over started components."""

    def __init__(
        self,
        components: Components,
        progress: ProgressFn | None = None,
        engine: IngestEngine | None = None,
    ) -> None:
        """``engine`` loads, chunks and embeds the changed files (default: this process's
        threads, with ``components``)."""
        self.c = components
        self.progress = progress or (lambda _: None)
        self.engine = engine or LocalEngine(self._prepare, self._embed)
        self.report = IngestReport()  # its token limit once chunks are counted (``_count``)

    def run(self, full: bool = False) -> IngestReport:
        """Bring the index in step with the sources; one ``ingest`` span, with a child span
        per embedded batch."""
        with tracing.span(self.c.tracing.tracer, "ingest", {"llmops.full": full}) as span:
            report = self._run(full)
            if span.is_recording():
                counts = {
                    k: v for k, v in report.to_dict().items() if isinstance(v, int | float | str)
                }
                span.set_attributes({f"llmops.ingest.{k}": v for k, v in counts.items()})
            return report

    def _run(self, full: bool) -> IngestReport:
        started = time.perf_counter()
        with ingestion_lock(self.c.data_dir), self._storage_faults():
            target, rebuilding = self._choose_target(full)
            self.report.collection, self.report.rebuilt = target.collection, rebuilding
            self._drop_leftovers(target)
            discovery = discover_files(self.c.sources)
            self.report.skipped |= discovery.refused
            self._sync(target, discovery.files)
            if rebuilding:
                self._promote(target)
            self.report.chunks_total = self.c.store.count(target.collection)
        self.report.seconds = time.perf_counter() - started
        return self.report

    @contextmanager
    def _storage_faults(self) -> Iterator[None]:
        """A full disk, a locked or damaged file stops the run with one line saying what, where,
        how far it got and how to go on; every file committed so far stays committed, and files
        half written are recorded as pending, so the next run redoes exactly those."""
        try:
            yield
        except (StorageError, sqlite3.Error, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise  # not a storage fault of the index (a source that cannot be read, ...)
            fault = exc if isinstance(exc, StorageError) else storage_error(exc, self.c.data_dir)
            report = self.report
            done = report.added + report.updated
            where = "in the new index (used once complete)" if report.rebuilt else "in the index"
            raise IngestError(
                f"ingestion stopped: {fault}. {done} changed files were committed {where} "
                f"before it stopped; run `llmops ingest` again to index the rest"
            ) from exc

    def _choose_target(self, full: bool) -> tuple[IndexTarget, bool]:
        records, fingerprint = self.c.records, self.c.fingerprint
        active, building = records.active(), records.building()
        if (
            active
            and active.fingerprint == fingerprint
            and not full
            and sparse_intact(self.c, active)
        ):
            return active, False
        if building and building.fingerprint == fingerprint:
            return building, True  # resume an interrupted rebuild
        name = f"{self.c.store.namespace}-g{records.next_generation()}"
        target = IndexTarget(name, fingerprint)
        records.set_building(target)
        return target, True

    def _chunk_indexes(self) -> list[VectorStore | SparseIndex]:
        """The vector store and the sparse index (when configured). Every delete and drop goes
        to both at the same point, so pending-id crash recovery covers both."""
        return [self.c.store] if self.c.sparse is None else [self.c.store, self.c.sparse]

    def _drop_leftovers(self, target: IndexTarget) -> None:
        """Collections of this app that are neither read nor being built (interrupted swaps)."""
        active = self.c.records.active()
        keep = {target.collection} | ({active.collection} if active else set())
        prefix = f"{self.c.store.namespace}-g"
        for index in self._chunk_indexes():
            for name in index.collections():
                if name.startswith(prefix) and name not in keep:
                    index.drop(name)
        for name in self.c.records.collections() - keep:
            self.c.records.forget_collection(name)

    def _promote(self, target: IndexTarget) -> None:
        previous = self.c.records.active()
        self.c.records.promote(target)
        if previous and previous.collection != target.collection:
            for index in self._chunk_indexes():
                index.drop(previous.collection)
            self.c.records.forget_collection(previous.collection)

    def _sync(self, target: IndexTarget, files: list[SourceFile]) -> None:
        collection = target.collection
        records = self.c.records.files(collection)
        present = {f.key for f in files}
        todo = []
        for f in files:
            old = records.get(f.key)
            if old and _unchanged(f, old):
                self.report.unchanged += 1
                if old.error:
                    self.report.skipped[f.key] = old.error
            else:
                todo.append(f)
        gone = [r for key, r in records.items() if key not in present]
        self._remove(collection, gone)
        progress = IngestProgress(files_total=len(files), files_done=self.report.unchanged)
        self.progress(progress)
        # The engine prepares and embeds the next batches (locally: the next batch is loaded
        # and chunked while this one embeds) while the previous one is written to the indexes.
        embedding = self.engine.embedded(todo, BATCH_CHUNKS)
        with embedding as batches, write_behind() as write:
            for batch, vectors in batches:
                if vectors is not None:
                    self.report.embed_calls += 1
                write(partial(self._write, collection, batch, vectors, records, progress))

    def _remove(self, collection: str, gone: list[FileRecord]) -> None:
        if not gone:
            return
        ids = sorted(set().union(*(r.stale_ids for r in gone)))
        for index in self._chunk_indexes():
            index.delete(collection, ids)
        self.c.records.remove(collection, [r.source for r in gone])
        self.report.removed += len(gone)
        self.report.chunks_deleted += len(ids)

    def _prepare(self, f: SourceFile) -> PreparedFile:
        """Load and chunk one file (on the prefetch thread, while the encoder works)."""
        return prepare_file(f, self.c.chunker, self.c.embedder.count_tokens)

    def _embed(self, batch: Batch) -> Vectors | None:
        texts = [c.text for p in batch for c in p.chunks]
        if not texts:
            return None
        attributes: tracing.Attributes = {
            tracing.OPERATION: "embeddings",
            tracing.REQUEST_MODEL: self.c.embed_model,
            "llmops.embed.batch_size": len(texts),
        }
        name = f"embeddings {self.c.embed_model}".rstrip()
        with tracing.span(self.c.tracing.tracer, name, attributes):
            return self.c.embedder.embed_documents(texts)

    def _write(
        self,
        collection: str,
        batch: Batch,
        vectors: Vectors | None,
        records: dict[str, FileRecord],
        progress: IngestProgress,
    ) -> None:
        """Store one embedded batch and commit its files (on the write-behind thread)."""
        self.c.records.mark_pending(
            collection, {p.file.key: [c.id for c in p.chunks] for p in batch}
        )
        chunks = [c for p in batch for c in p.chunks]
        if vectors is not None:
            self.c.store.upsert(collection, chunks, vectors)
            if self.c.sparse is not None:
                self.c.sparse.upsert(collection, chunks)
        stale: set[str] = set()
        for p in batch:
            old = records.get(p.file.key)
            stale |= (old.stale_ids if old else set()) - {c.id for c in p.chunks}
        for index in self._chunk_indexes():
            index.delete(collection, sorted(stale))
        self.c.records.commit(
            collection,
            [
                FileRecord(
                    p.file.key, p.file.content_hash, tuple(c.id for c in p.chunks), (), p.error
                )
                for p in batch
            ],
        )
        self._count(batch, records, len(stale))
        progress.files_done += len(batch)
        progress.chunks_done += len(chunks)
        self.progress(progress)

    def _count(self, batch: Batch, records: dict[str, FileRecord], deleted: int) -> None:
        report = self.report
        if not report.token_limit and any(p.token_counts for p in batch):
            # read now, not at the start: the model loads at its first use, and an ingestion
            # that counts no chunk must not load it for this
            report.token_limit = self.c.embedder.max_seq_length
        for p in batch:
            old = records.get(p.file.key)
            if old and old.content_hash:
                report.updated += 1
            else:
                report.added += 1
            if p.error:
                report.skipped[p.file.key] = p.error
            if p.parser:
                report.parsers[p.file.key] = p.parser
            report.chunks_embedded += len(p.chunks)
            report.oversize_chunks += sum(n > report.token_limit for n in p.token_counts)
            report.longest_chunk_tokens = max([report.longest_chunk_tokens, *p.token_counts])
        report.chunks_deleted += deleted


def _unchanged(f: SourceFile, old: FileRecord) -> bool:
    """Indexed as it is now: same content, nothing pending, and not skipped for want of a
    loader that it has now (a format supported since the last run)."""
    if old.content_hash != f.content_hash or old.pending_ids:
        return False
    return f.loader is None or old.error != no_loader(f)
