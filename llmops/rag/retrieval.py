"""Dense retrieval: top-k by cosine similarity, a score threshold, filters and MMR."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmops.protocols import Vectors, VectorStore
from llmops.rag import filters
from llmops.types import ScoredChunk


@dataclass(frozen=True)
class SearchParams:
    top_k: int = 4
    score_threshold: float = 0.0
    where: filters.Filter | None = None
    mmr: bool = False
    fetch_k: int = 20
    mmr_lambda: float = 0.5


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


def rrf_fuse(rankings: list[list[ScoredChunk]], top_k: int, k: int = 60) -> list[ScoredChunk]:
    """Reciprocal rank fusion: order chunks by the sum of ``1 / (k + rank)`` over the rankings
    they appear in (rank from 1). Each fused hit keeps its best score from any ranking."""
    fused: dict[str, float] = {}
    best: dict[str, ScoredChunk] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            cid = hit.chunk.id
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (k + rank)
            if cid not in best or hit.score > best[cid].score:
                best[cid] = hit
    order = sorted(fused, key=lambda cid: -fused[cid])
    return [best[cid] for cid in order[:top_k]]


_Key = tuple[str, int, str, bool]
_Hits = tuple[list[ScoredChunk], Vectors | None]


class DenseRetriever:
    """Searches one collection of a vector store with query vectors.

    ``asearch`` batches the searches of concurrent requests: every request that asks in the
    same event-loop turn with the same collection, depth and filter shares one store call
    (one Chroma query with many vectors costs far less than many queries with one).
    """

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self._pending: dict[_Key, list[tuple[Vectors, asyncio.Future[_Hits]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def asearch(
        self, collection: str, query: Vectors, params: SearchParams
    ) -> list[ScoredChunk]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Hits] = loop.create_future()
        where = _where(params)
        key = _key(collection, params, where)
        waiting = self._pending.setdefault(key, [])
        if not waiting:
            loop.call_soon(self._schedule_flush, key, where)
        waiting.append((query, future))
        return _finish(query, await future, params)

    def _schedule_flush(self, key: _Key, where: Mapping[str, Any] | None) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(key, where))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, key: _Key, where: Mapping[str, Any] | None) -> None:
        batch = self._pending.pop(key)
        queries = np.stack([q for q, _ in batch])
        try:
            found = await asyncio.to_thread(
                self.store.search, key[0], queries, key[1], where, key[3]
            )
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), hits in zip(batch, found, strict=True):
            if not future.done():
                future.set_result(hits)


def _key(collection: str, params: SearchParams, where: Mapping[str, Any] | None) -> _Key:
    fetch = max(params.fetch_k, params.top_k) if params.mmr else params.top_k
    return (collection, fetch, json.dumps(where, sort_keys=True) if where else "", params.mmr)


def _where(params: SearchParams) -> Mapping[str, Any] | None:
    return filters.to_chroma(params.where) if params.where else None


def _finish(query: Vectors, found: _Hits, params: SearchParams) -> list[ScoredChunk]:
    hits, vectors = found
    if params.mmr and vectors is not None and len(hits) > params.top_k:
        order = mmr_select(query, vectors, params.top_k, params.mmr_lambda)
        hits = [hits[i] for i in order]
    return [h for h in hits[: params.top_k] if h.score >= params.score_threshold]
