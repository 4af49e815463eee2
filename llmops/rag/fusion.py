"""Merging rankings: reciprocal-rank fusion and weighted fusion of normalised scores, and
``fuse_hybrid``, which merges a dense and a BM25 ranking by the configured method.

``rrf_fuse`` and ``weighted_fuse`` take several rankings of the same collection (dense, BM25,
or one per phrasing of a question) and return one ranking. A fused hit carries its fused
score, so a threshold or a display reads the score that ordered it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from llmops.rag.adaptive_fusion import adaptive_fuse
from llmops.types import ScoredChunk


@dataclass(frozen=True)
class FusionSettings:
    """How hybrid search merges its rankings (``retrieval.fusion``, ``rrf_k``,
    ``dense_weight``: the dense share of ``weighted``, the dense prior of ``adaptive``)."""

    method: str = "adaptive"
    rrf_k: int = 60
    dense_weight: float = 0.5


HybridFusion = Callable[
    [Sequence[ScoredChunk], Sequence[ScoredChunk], int, FusionSettings], list[ScoredChunk]
]


def fuse_hybrid(
    dense: Sequence[ScoredChunk],
    sparse: Sequence[ScoredChunk],
    top_k: int,
    settings: FusionSettings,
) -> list[ScoredChunk]:
    """The first ``top_k`` of the dense and BM25 rankings merged by ``settings.method``.

    A ranking with no evidence (no hits, or none scoring above 0: a question sharing no term
    with the corpus gets that from BM25) is left out, and the other one is returned as it is:
    fusing with it could only push the useful ranking's hits around."""
    if not useful(sparse):
        return list(dense[:top_k])
    if not useful(dense):
        return list(sparse[:top_k])
    return HYBRID_FUSIONS[settings.method](dense, sparse, top_k, settings)


def useful(ranking: Sequence[ScoredChunk]) -> bool:
    """Whether a ranking holds any evidence: a hit scoring above 0."""
    return any(hit.score > 0 for hit in ranking)


def rrf_fuse(
    rankings: Sequence[Sequence[ScoredChunk]], top_k: int, k: int = 60
) -> list[ScoredChunk]:
    """Order chunks by the sum of ``1 / (k + rank)`` over the rankings they appear in (rank
    from 1). Scores do not matter, only positions, so rankings of any scale mix safely."""
    fused: dict[str, float] = {}
    chunks: dict[str, ScoredChunk] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            cid = hit.chunk.id
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (k + rank)
            chunks.setdefault(cid, hit)
    return _ranked(fused, chunks, top_k)


def weighted_fuse(
    rankings: Sequence[Sequence[ScoredChunk]], weights: Sequence[float], top_k: int
) -> list[ScoredChunk]:
    """Order chunks by ``sum(weight * normalised score)`` over the rankings (a chunk missing
    from a ranking gets 0 there). Each ranking's scores are min-max normalised over its own
    candidates, so cosine similarities and unbounded BM25 scores share one 0..1 scale, and the
    margin by which a chunk wins a ranking counts, not only its position."""
    fused: dict[str, float] = {}
    chunks: dict[str, ScoredChunk] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for hit, score in zip(ranking, min_max(ranking), strict=True):
            cid = hit.chunk.id
            fused[cid] = fused.get(cid, 0.0) + weight * score
            chunks.setdefault(cid, hit)
    return _ranked(fused, chunks, top_k)


def min_max(ranking: Sequence[ScoredChunk]) -> list[float]:
    """Scores scaled to 0..1 over the ranking (all 1.0 when they are equal)."""
    if not ranking:
        return []
    scores = [hit.score for hit in ranking]
    low, high = min(scores), max(scores)
    if high - low <= 1e-12:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def _ranked(
    fused: dict[str, float], chunks: dict[str, ScoredChunk], top_k: int
) -> list[ScoredChunk]:
    # ties keep first-seen order: sorted() is stable and dicts keep insertion order
    order = sorted(fused, key=lambda cid: -fused[cid])[:top_k]
    return [replace(chunks[cid], score=fused[cid]) for cid in order]


HYBRID_FUSIONS: dict[str, HybridFusion] = {
    "rrf": lambda dense, sparse, top_k, f: rrf_fuse([dense, sparse], top_k, f.rrf_k),
    "weighted": lambda dense, sparse, top_k, f: weighted_fuse(
        [dense, sparse], (f.dense_weight, 1.0 - f.dense_weight), top_k
    ),
    "adaptive": lambda dense, sparse, top_k, f: adaptive_fuse(dense, sparse, top_k, f.dense_weight),
}
"""``retrieval.fusion`` → how ``fuse_hybrid`` merges (the config's ``Fusion`` names)."""
