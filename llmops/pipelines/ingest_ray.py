"""The ``ray`` ingestion engine: the changed files are loaded, chunked and embedded by Ray Data
actors, and come back to the ingesting process, which writes them to the indexes and records
exactly as a local ingestion does (same chunk ids, same records, same crash safety).

Each actor builds its loaders, chunker and embedder from the validated config once (the model
loads once per actor), then handles ``ingest.ray.batch_size`` files per call. Source files must
be readable at the same paths on every node of the cluster.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmops.build import AppSpec, build_ingest_parts
from llmops.deps import require
from llmops.errors import ComponentError, IngestError
from llmops.pipelines.discovery import SourceFile
from llmops.pipelines.ingest_engines import EmbeddedBatch, grouped
from llmops.pipelines.prepare import PreparedFile, prepare_file
from llmops.protocols import Vectors
from llmops.rag.loaders.directory import loader_for
from llmops.ray_cluster import connect
from llmops.types import Chunk


@dataclass(frozen=True)
class FileResult:
    """What a worker sends back for one file: its ``PreparedFile`` without the file (the
    ingesting process has it), and its chunks' vectors."""

    chunks: list[Chunk]
    error: str | None
    token_counts: list[int]
    parser: str | None
    vectors: Vectors | None


class IngestWorker:
    """A Ray actor: loads, chunks and embeds batches of files with components built from the
    app's validated config (the same code as ``build``, so the same chunk ids and vectors)."""

    def __init__(self, spec: AppSpec) -> None:
        self.parts = build_ingest_parts(spec)
        self.parts.embedder.start()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        files = [
            self._source_file(str(key), str(path), str(digest), int(source))
            for key, path, digest, source in zip(
                batch["key"], batch["path"], batch["content_hash"], batch["source"], strict=True
            )
        ]
        embedder = self.parts.embedder
        prepared = [prepare_file(f, self.parts.chunker, embedder.count_tokens) for f in files]
        texts = [c.text for p in prepared for c in p.chunks]
        vectors = embedder.embed_documents(texts) if texts else None
        results, start = [], 0
        for p in prepared:
            end = start + len(p.chunks)
            part = vectors[start:end] if vectors is not None and p.chunks else None
            result = FileResult(p.chunks, p.error, p.token_counts, p.parser, part)
            results.append(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
            start = end
        return {"key": batch["key"], "result": np.array(results, dtype=object)}

    def _source_file(self, key: str, path: str, digest: str, source: int) -> SourceFile:
        loaders = self.parts.sources[source][3]
        return SourceFile(key, Path(path), loader_for(Path(path), loaders), digest, source)


class RayEngine:
    """Runs ``IngestWorker`` actors on Ray Data (``ingest.ray``: address, workers, CPUs per
    worker, files per call) and regroups what they send back into write batches."""

    def __init__(self, spec: AppSpec) -> None:
        self.spec = spec
        self.settings = spec.loaded.app.ingest.ray

    def _connect(self) -> Any:
        try:
            return connect(self.settings.address, self.settings.num_cpus)
        except ComponentError as exc:
            where = f"{self.spec.loaded.file}: ingest.ray.address"
            raise IngestError(f"{where}: {exc}") from exc

    @contextmanager
    def embedded(
        self, files: Sequence[SourceFile], batch_chunks: int
    ) -> Iterator[Iterator[EmbeddedBatch]]:
        if not files:
            yield iter(())
            return
        ray = self._connect()
        rows = iter(self._dataset(files).iter_rows())
        by_key = {f.key: f for f in files}
        results = (_received(by_key, row) for row in _worker_faults(ray, rows))
        try:
            yield (_stacked(batch) for batch in grouped(results, _size, batch_chunks))
        finally:
            getattr(rows, "close", lambda: None)()  # stops the actors when left early

    def _dataset(self, files: Sequence[SourceFile]) -> Any:
        """A row per file, mapped by ``IngestWorker`` actors, ``batch_size`` files a call."""
        data = require("ray.data", extra="ray")
        data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-run INFO lines
        s = self.settings
        rows = [
            {"key": f.key, "path": str(f.path), "content_hash": f.content_hash, "source": f.source}
            for f in files
        ]
        blocks = -(-len(rows) // s.batch_size)
        return data.from_items(rows, override_num_blocks=blocks).map_batches(
            IngestWorker,
            fn_constructor_args=(self.spec,),
            batch_size=s.batch_size,
            batch_format="numpy",
            compute=data.ActorPoolStrategy(size=min(s.workers, blocks)),  # one model each
            num_cpus=s.cpus_per_worker,
        )


def _worker_faults(ray: Any, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The rows; a worker's failure (its model cannot load, ...) as an ``IngestError``."""
    try:
        yield from rows
    except ray.exceptions.RayError as exc:
        raise IngestError(f"ingestion on Ray failed in a worker: {exc}") from exc


def _received(by_key: dict[str, SourceFile], row: dict[str, Any]) -> tuple[PreparedFile, Any]:
    result: FileResult = pickle.loads(row["result"])
    prepared = PreparedFile(
        by_key[str(row["key"])], result.chunks, result.error, result.token_counts, result.parser
    )
    return prepared, result.vectors


def _size(item: tuple[PreparedFile, Any]) -> int:
    return len(item[0].chunks)


def _stacked(items: list[tuple[PreparedFile, Vectors | None]]) -> EmbeddedBatch:
    parts = [vectors for _, vectors in items if vectors is not None]
    return [p for p, _ in items], (np.concatenate(parts) if parts else None)
