"""Dense retrieval: top-k by cosine similarity under a filter, batched across requests; MMR."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from llmops.protocols import Vectors, VectorStore
from llmops.types import ScoredChunk


def mmr_select(query: Vectors, vectors: Vectors, k: int, lambda_: float) -> list[int]:
    """Maximal marginal relevance: indices of ``k`` rows balancing relevance and novelty.

    Each step picks the row maximising ``lambda * sim(query, row) - (1 - lambda) * max sim(row,
    already chosen)``; vectors are compared by cosine similarity.
    """
    if len(vectors) == 0:
        return []
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    q = query / max(float(np.linalg.norm(query)), 1e-12)
    relevance = unit @ q
    similarity = unit @ unit.T
    chosen = [int(np.argmax(relevance))]
    redundancy = similarity[chosen[0]].copy()
    while len(chosen) < min(k, len(vectors)):
        score = lambda_ * relevance - (1.0 - lambda_) * redundancy
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        redundancy = np.maximum(redundancy, similarity[best])
    return chosen


_Key = tuple[str, int, str]


class DenseRetriever:
    """Searches one collection of a vector store with query vectors.

    ``asearch`` batches the searches of concurrent requests: every request that asks in the
    same event-loop turn with the same collection, depth and filter shares one store call
    (one Chroma query with many vectors costs far less than many queries with one).
    """

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self._pending: dict[_Key, list[tuple[Vectors, asyncio.Future[list[ScoredChunk]]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def asearch(
        self, collection: str, query: Vectors, top_k: int, where: Mapping[str, Any] | None
    ) -> list[ScoredChunk]:
        """The ``top_k`` chunks most similar to ``query`` (cosine) among those ``where``
        (a Chroma where-clause) accepts, best first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[ScoredChunk]] = loop.create_future()
        key = (collection, top_k, json.dumps(where, sort_keys=True) if where else "")
        waiting = self._pending.setdefault(key, [])
        if not waiting:
            loop.call_soon(self._schedule_flush, key, where)
        waiting.append((query, future))
        return await future

    def _schedule_flush(self, key: _Key, where: Mapping[str, Any] | None) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(key, where))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, key: _Key, where: Mapping[str, Any] | None) -> None:
        batch = self._pending.pop(key)
        queries = np.stack([q for q, _ in batch])
        try:
            found = await asyncio.to_thread(self.store.search, key[0], queries, key[1], where)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), hits in zip(batch, found, strict=True):
            if not future.done():
                future.set_result(hits)
