"""Search: dense, sparse (BM25) or hybrid retrieval → optional rerank → optional MMR → top-k.

One ``Searcher`` serves every mode, so filters, depth and thresholds mean the same thing
whichever paths run:

- each path fetches ``candidates`` hits (at least what the later stages need) under the same
  filter — a Chroma where-clause for dense, the equivalent predicate for BM25;
- hybrid fuses the two rankings (``adaptive``: weights from each ranking's own evidence for
  the question; ``weighted``: min-max normalised scores, ``dense_weight`` to the dense side;
  ``rrf``: reciprocal ranks); a ranking with no hit scoring above 0 is left out;
- several phrasings of one request (the question alone, and with earlier turns) are searched
  each and fused by reciprocal rank, keeping each hit's best score;
- the reranker re-scores the first ``rerank_top_n`` hits; MMR then diversifies;
- ``score_threshold`` applies to the final score: cosine (dense), BM25 (sparse), the fused
  score (hybrid) or the reranker's.

Serving cost: concurrent requests' store searches, BM25 searches and stored-vector reads are
each one batched call (``Batcher``); hybrid search takes its dense candidates as ids and
similarities and their chunks from the BM25 index's memory (docs/retrieval.md, "Serving cost").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal

import numpy as np
from opentelemetry.trace import Span, Tracer

from llmops import tracing
from llmops.protocols import Reranker, SparseIndex, Vectors, VectorStore
from llmops.rag import filters
from llmops.rag.embedders.worker import EncoderThread
from llmops.rag.fusion import FusionSettings, fuse_hybrid, rrf_fuse
from llmops.rag.retrieval import Batcher, all_or_cancelled, mmr_select
from llmops.types import ScoredChunk


@dataclass(frozen=True)
class SearchParams:
    top_k: int = 4
    score_threshold: float = 0.0
    where: filters.Filter | None = None
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    fusion: Literal["adaptive", "rrf", "weighted"] = "adaptive"
    rrf_k: int = 60
    dense_weight: float = 0.5
    candidates: int = 100
    rerank: bool = False
    rerank_top_n: int = 30
    mmr: bool = False
    fetch_k: int = 20
    mmr_lambda: float = 0.5

    @property
    def depth(self) -> int:
        """How many hits the stages after retrieval need."""
        needs = [self.top_k]
        if self.mmr:
            needs.append(self.fetch_k)
        if self.rerank:
            needs.append(self.rerank_top_n)
        return max(needs)


@dataclass
class SearchTrace:
    """Filled in by ``Searcher.search`` for monitoring: seconds per stage (embed, retrieve,
    rerank) and the question's embedding."""

    stages: dict[str, float] = field(default_factory=dict)
    vector: Vectors | None = None


_Key = tuple[str, int, "filters.Filter | None"]  # collection, depth, filter: one batch


@dataclass(frozen=True)
class _Query:
    text: str
    vector: Vectors | None = None


class Searcher:
    """Runs searches over one app's vector store and sparse index; each stage is a span of
    ``tracer`` (``embed_model`` names the embedding model in them)."""

    def __init__(
        self,
        store: VectorStore,
        sparse: SparseIndex | None,
        encoder: EncoderThread,
        reranker: Reranker | None = None,
        tracer: Tracer = tracing.NOOP,
        embed_model: str = "",
    ) -> None:
        self.store, self.sparse, self.encoder, self.reranker = store, sparse, encoder, reranker
        self.tracer, self.embed_model = tracer, embed_model
        # concurrent requests share store and index calls (see ``Batcher``)
        self._dense_batches = Batcher(self._dense_batch)
        self._sparse_batches = Batcher(self._sparse_batch)
        self._vector_batches = Batcher(self._vectors_batch)

    async def search(
        self,
        collection: str,
        texts: Sequence[str],
        params: SearchParams,
        trace: SearchTrace | None = None,
    ) -> list[ScoredChunk]:
        """Search with each of ``texts`` (the first is the question itself) and fuse."""
        attributes: tracing.Attributes = {
            tracing.OPERATION: "retrieval",
            tracing.DATA_SOURCE: collection,
            "llmops.search.mode": params.mode,
            "llmops.search.top_k": params.top_k,
            "llmops.search.phrasings": len(texts),
        }
        with tracing.span(self.tracer, "retrieval", attributes) as span:
            hits = await self._search(collection, texts, params, trace or SearchTrace())
            _found(span, hits)
            return hits

    async def _search(
        self, collection: str, texts: Sequence[str], params: SearchParams, trace: SearchTrace
    ) -> list[ScoredChunk]:
        clock = time.perf_counter()
        queries = [_Query(t) for t in texts]
        if params.mode != "sparse" or params.mmr:
            vectors = await self._embed(texts)
            queries = [_Query(t, v) for t, v in zip(texts, vectors, strict=True)]
            trace.vector = vectors[0]
            clock = _lap(trace, "embed", clock)
        rankings = await all_or_cancelled(*(self._ranking(collection, q, params) for q in queries))
        hits = rankings[0] if len(rankings) == 1 else _fuse_phrasings(rankings, params.depth)
        clock = _lap(trace, "retrieve", clock)
        if params.rerank and self.reranker is not None:
            hits = await self._rerank(texts[0], hits, params.rerank_top_n)
            clock = _lap(trace, "rerank", clock)
        if params.mmr and len(hits) > params.top_k:
            hits = await self._diversify(collection, queries[0], hits, params)
        hits = await self._with_similarity(collection, queries[0], hits[: params.top_k])
        _lap(trace, "retrieve", clock)
        return [h for h in hits if h.score >= params.score_threshold]

    async def _embed(self, texts: Sequence[str]) -> list[Vectors]:
        attributes: tracing.Attributes = {
            tracing.OPERATION: "embeddings",
            tracing.REQUEST_MODEL: self.embed_model,
            "llmops.embed.batch_size": len(texts),
        }
        name = f"embeddings {self.embed_model}".rstrip()
        with tracing.span(self.tracer, name, attributes):
            return await all_or_cancelled(*(self.encoder.encode_query(t) for t in texts))

    async def _ranking(
        self, collection: str, query: _Query, params: SearchParams
    ) -> list[ScoredChunk]:
        if params.mode == "dense":
            return await self._dense(collection, query, params.depth, params)
        if params.mode == "sparse":
            return await self._sparse(collection, query.text, params.depth, params)
        depth = max(params.candidates, params.depth)
        dense, sparse = await all_or_cancelled(
            self._dense(collection, query, depth, params, chunks_from_sparse=True),
            self._sparse(collection, query.text, depth, params),
        )
        with tracing.span(self.tracer, "fusion", {"llmops.fusion.method": params.fusion}) as span:
            settings = FusionSettings(params.fusion, params.rrf_k, params.dense_weight)
            fused = fuse_hybrid(dense, sparse, params.depth, settings)
            _found(span, fused)
            return fused

    async def _dense(
        self,
        collection: str,
        query: _Query,
        depth: int,
        params: SearchParams,
        chunks_from_sparse: bool = False,
    ) -> list[ScoredChunk]:
        assert query.vector is not None
        key = (collection, depth, params.where, chunks_from_sparse)
        with self._stage_span("search dense", depth) as span:
            hits = await self._dense_batches.ask(key, query.vector)
            _found(span, hits)
            return hits

    def _dense_batch(
        self, key: tuple[str, int, filters.Filter | None, bool], vectors: list[Vectors]
    ) -> list[list[ScoredChunk]]:
        """Store searches; for hybrid search, ids and similarities only, with the chunks read
        from the sparse index's memory (Chroma reads 100 candidates' texts in about ten times
        the time of the search itself)."""
        collection, depth, where, chunks_from_sparse = key
        chroma_where = filters.to_chroma(where) if where else None
        if not chunks_from_sparse:
            return self.store.search(collection, np.stack(vectors), depth, chroma_where)
        assert self.sparse is not None
        ranked = self.store.rank(collection, np.stack(vectors), depth, chroma_where)
        chunks = self.sparse.chunks(collection, [cid for row in ranked for cid, _ in row])
        # a chunk the sparse index does not hold (yet) is left out, as a running ingestion's
        return [[ScoredChunk(chunks[c], s, s) for c, s in row if c in chunks] for row in ranked]

    async def _sparse(
        self, collection: str, text: str, depth: int, params: SearchParams
    ) -> list[ScoredChunk]:
        if self.sparse is None:
            raise RuntimeError("sparse search needs a sparse index (sparse: {type: bm25})")
        with self._stage_span("search sparse", depth) as span:
            hits = await self._sparse_batches.ask((collection, depth, params.where), text)
            _found(span, hits)
            return hits

    def _stage_span(self, name: str, depth: int) -> AbstractContextManager[Span]:
        return tracing.span(self.tracer, name, {"llmops.search.depth": depth})

    def _sparse_batch(self, key: _Key, texts: list[str]) -> list[list[ScoredChunk]]:
        assert self.sparse is not None
        collection, depth, where = key
        accept = partial(filters.matches, where) if where else None
        return self.sparse.search(collection, texts, depth, accept)

    async def _rerank(
        self, question: str, hits: list[ScoredChunk], top_n: int
    ) -> list[ScoredChunk]:
        """Re-score the first ``top_n`` hits; the rest follow in their fused order. The
        cross-encoder runs on the encoder thread, so it never competes with the embedder."""
        assert self.reranker is not None
        head, tail = hits[:top_n], hits[top_n:]
        job = partial(self.reranker.rerank, question, head, len(head))
        with tracing.span(self.tracer, "rerank", {"llmops.rerank.candidates": len(head)}) as span:
            reranked = await asyncio.wrap_future(self.encoder.submit(job))
            _found(span, reranked)
        return [*reranked, *tail]

    async def _diversify(
        self, collection: str, query: _Query, hits: list[ScoredChunk], params: SearchParams
    ) -> list[ScoredChunk]:
        assert query.vector is not None
        candidates = hits[: max(params.fetch_k, params.top_k)]
        stored = await self._stored_vectors(collection, candidates)
        pool = [h for h in candidates if h.chunk.id in stored]
        vectors = (
            np.stack([stored[h.chunk.id] for h in pool]) if pool else np.zeros((0, 0), np.float32)
        )
        chosen = mmr_select(query.vector, vectors, params.top_k, params.mmr_lambda)
        return [pool[i] for i in chosen]

    async def _with_similarity(
        self, collection: str, query: _Query, hits: list[ScoredChunk]
    ) -> list[ScoredChunk]:
        """Fill in the cosine similarity of hits that only BM25 found (one store read). A hit the
        vector store does not hold is dropped: a running ingestion is replacing or deleting it."""
        vector = query.vector
        if vector is None or all(h.similarity is not None for h in hits):
            return hits
        stored = await self._stored_vectors(collection, [h for h in hits if h.similarity is None])
        out = []
        for hit in hits:
            if hit.similarity is None and hit.chunk.id in stored:
                hit = replace(hit, similarity=_cosine(stored[hit.chunk.id], vector))
            if hit.similarity is not None:
                out.append(hit)
        return out

    async def _stored_vectors(
        self, collection: str, hits: Sequence[ScoredChunk]
    ) -> dict[str, Vectors]:
        return await self._vector_batches.ask(collection, [h.chunk.id for h in hits])

    def _vectors_batch(self, collection: str, asked: list[list[str]]) -> list[dict[str, Vectors]]:
        found = self.store.vectors(collection, list(dict.fromkeys(i for ids in asked for i in ids)))
        return [{i: found[i] for i in ids if i in found} for ids in asked]


def _found(span: Span, hits: Sequence[ScoredChunk]) -> None:
    """A stage span's result: how many hits, and the best and worst score."""
    if span.is_recording():
        scores = [h.score for h in hits]
        found: tracing.Attributes = {"llmops.hits": len(hits)}
        if scores:
            found.update({"llmops.score.max": max(scores), "llmops.score.min": min(scores)})
        span.set_attributes(found)


def _lap(trace: SearchTrace, stage: str, since: float) -> float:
    now = time.perf_counter()
    trace.stages[stage] = trace.stages.get(stage, 0.0) + now - since
    return now


def _cosine(vector: Vectors, query: Vectors) -> float:
    norms = float(np.linalg.norm(vector)) * float(np.linalg.norm(query))
    return float(vector @ query) / max(norms, 1e-12)


def _fuse_phrasings(rankings: Sequence[list[ScoredChunk]], depth: int) -> list[ScoredChunk]:
    """Reciprocal-rank fusion across phrasings of one question; each hit keeps the best score
    it had in any of them (the phrasings share one scale, so that score stays meaningful)."""
    best: dict[str, float] = {}
    for ranking in rankings:
        for hit in ranking:
            best[hit.chunk.id] = max(best.get(hit.chunk.id, hit.score), hit.score)
    return [replace(h, score=best[h.chunk.id]) for h in rrf_fuse(rankings, depth)]
