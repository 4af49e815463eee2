"""Dense retrieval: top-k by cosine similarity, a score threshold, filters and MMR."""

from __future__ import annotations

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


class DenseRetriever:
    """Searches one collection of a vector store with a query vector."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store

    def search(self, collection: str, query: Vectors, params: SearchParams) -> list[ScoredChunk]:
        where: Mapping[str, Any] | None = filters.to_chroma(params.where) if params.where else None
        fetch = max(params.fetch_k, params.top_k) if params.mmr else params.top_k
        hits, vectors = self.store.search(
            collection, query.reshape(1, -1), fetch, where=where, with_vectors=params.mmr
        )[0]
        if params.mmr and vectors is not None and len(hits) > params.top_k:
            order = mmr_select(query, vectors, params.top_k, params.mmr_lambda)
            hits = [hits[i] for i in order]
        return [h for h in hits[: params.top_k] if h.score >= params.score_threshold]
