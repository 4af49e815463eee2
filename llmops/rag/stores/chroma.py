"""Chroma vector store: embedded ``PersistentClient`` by default, ``HttpClient`` for a server.

llmops always passes its own vectors: Chroma's default embedding function (which downloads a
model) is never used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llmops.deps import require
from llmops.protocols import Vectors
from llmops.rag.filters import chunk_metadata
from llmops.registry import register
from llmops.types import Chunk, ScoredChunk

MAX_BATCH = 5000
_RESERVED = ("document_id", "source", "index")


def _metadata(chunk: Chunk) -> dict[str, Any]:
    return chunk_metadata(chunk)  # shared with the sparse index, so filters agree on both paths


def _chunk(chunk_id: str, text: str, meta: Mapping[str, Any]) -> Chunk:
    extra = {k: v for k, v in meta.items() if k not in _RESERVED}
    return Chunk(
        id=chunk_id,
        document_id=str(meta["document_id"]),
        text=text,
        source=str(meta["source"]),
        index=int(meta["index"]),
        metadata=extra,
    )


@register(
    "store",
    "chroma",
    summary="Chroma: embedded on disk (default) or a Chroma server via host/port",
    extra="rag",
    requires=("chromadb",),
)
class ChromaStore:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        collection: str | None = Field(
            None, description="Prefix of the collections; defaults to the app name."
        )
        path: str | None = Field(None, description="Folder; defaults to <data_dir>/chroma.")
        host: str | None = Field(None, description="Chroma server host (client/server mode).")
        port: int = Field(8000, ge=1, le=65535)

    def __init__(self, config: Config, *, data_dir: Path, namespace: str) -> None:
        self.config = config
        self.namespace = config.collection or namespace
        self._path = Path(config.path) if config.path else data_dir / "chroma"
        self._client: Any = None
        self._collections: dict[str, Any] = {}

    def start(self) -> None:
        if self._client is not None:
            return
        chromadb = require("chromadb", "rag")
        settings = chromadb.config.Settings(anonymized_telemetry=False)
        if self.config.host:
            self._client = chromadb.HttpClient(
                host=self.config.host, port=self.config.port, settings=settings
            )
        else:
            self._path.mkdir(parents=True, exist_ok=True)
            self._client = chromadb.PersistentClient(path=str(self._path), settings=settings)

    def close(self) -> None:
        self._collections.clear()
        self._client = None

    def _get(self, name: str) -> Any:
        if self._client is None:
            raise RuntimeError("vector store not started: call start() first")
        if name not in self._collections:
            self._collections[name] = self._client.get_or_create_collection(
                name=name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
            )
        return self._collections[name]

    def upsert(self, collection: str, chunks: Sequence[Chunk], vectors: Vectors) -> None:
        target = self._get(collection)
        for start in range(0, len(chunks), MAX_BATCH):
            part = chunks[start : start + MAX_BATCH]
            target.upsert(
                ids=[c.id for c in part],
                embeddings=vectors[start : start + MAX_BATCH],
                documents=[c.text for c in part],
                metadatas=[_metadata(c) for c in part],
            )

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        target = self._get(collection)
        for start in range(0, len(ids), MAX_BATCH):
            target.delete(ids=list(ids[start : start + MAX_BATCH]))

    def _query(
        self,
        collection: str,
        queries: Vectors,
        top_k: int,
        where: Mapping[str, Any] | None,
        include: list[str],
    ) -> Any:
        return self._get(collection).query(
            query_embeddings=queries,
            n_results=top_k,
            where=dict(where) if where else None,
            include=include,
        )

    def search(
        self,
        collection: str,
        queries: Vectors,
        top_k: int,
        where: Mapping[str, Any] | None = None,
    ) -> list[list[ScoredChunk]]:
        result = self._query(
            collection, queries, top_k, where, ["documents", "metadatas", "distances"]
        )
        return [
            [
                ScoredChunk(_chunk(cid, text, meta), 1.0 - float(dist), 1.0 - float(dist))
                for cid, text, meta, dist in zip(
                    result["ids"][row],
                    result["documents"][row],
                    result["metadatas"][row],
                    result["distances"][row],
                    strict=True,
                )
            ]
            for row in range(len(queries))
        ]

    def rank(
        self,
        collection: str,
        queries: Vectors,
        top_k: int,
        where: Mapping[str, Any] | None = None,
    ) -> list[list[tuple[str, float]]]:
        # ids and distances only: reading 100 candidates' texts and metadata costs Chroma ten
        # times the search itself (12.8 ms against 1.3 ms on 14k chunks)
        result = self._query(collection, queries, top_k, where, ["distances"])
        return [
            [(cid, 1.0 - float(dist)) for cid, dist in zip(ids, dists, strict=True)]
            for ids, dists in zip(result["ids"], result["distances"], strict=True)
        ]

    def vectors(self, collection: str, ids: Sequence[str]) -> dict[str, Vectors]:
        if not ids:
            return {}
        found = self._get(collection).get(ids=list(ids), include=["embeddings"])
        return {
            cid: np.asarray(vector, dtype=np.float32)
            for cid, vector in zip(found["ids"], found["embeddings"], strict=True)
        }

    def count(self, collection: str) -> int:
        return int(self._get(collection).count())

    def ids(self, collection: str) -> set[str]:
        return set(self._get(collection).get(include=[])["ids"])

    def collections(self) -> list[str]:
        if self._client is None:
            raise RuntimeError("vector store not started: call start() first")
        return [c if isinstance(c, str) else c.name for c in self._client.list_collections()]

    def drop(self, collection: str) -> None:
        self._collections.pop(collection, None)
        if collection in self.collections():
            self._client.delete_collection(collection)
