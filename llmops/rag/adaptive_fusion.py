"""Adaptive fusion of a dense and a BM25 ranking: each ranking's weight comes from its own
evidence for this question, with no labels and no per-corpus setting.

Each ranking's scores are min-max normalised over its candidates (as ``weighted`` fusion
does); its evidence is how far its best hit stands out from its first ``HEAD`` hits, in their
own standard deviations (a query-performance predictor in the family of NQC and WIG, which
needs no corpus statistics), and the two evidences, squared, share the weight. A ranking with
a clear winner is trusted more than a flat one: BM25 when the question's rare terms pick out a
few documents, dense search when one passage is much nearer than the others. On SciFact and
CLAP-NQ the larger evidence named the better ranking for 69-77% of the questions where the two
differ; see docs/retrieval.md, "Adaptive fusion", for the variants measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from llmops.types import ScoredChunk

HEAD = 10  # hits whose spread measures how far the best one stands out
POWER = 2.0  # sharpens the split: squared evidences weigh the surer ranking more (measured)
FLOOR = 1e-3  # smallest evidence a ranking with hits is given


def adaptive_fuse(
    dense: Sequence[ScoredChunk],
    sparse: Sequence[ScoredChunk],
    top_k: int,
    prior: float = 0.5,
) -> list[ScoredChunk]:
    """The first ``top_k`` chunks by ``w * dense + (1 - w) * sparse`` (normalised scores, 0
    for a chunk missing from a ranking), ``w`` from the rankings' ``evidence`` and the dense
    ``prior`` (see ``dense_share``). Fused scores lie in 0..1."""
    d, s = _scores(dense), _scores(sparse)
    weight = dense_share(evidence(d), evidence(s), prior)
    fused: dict[str, float] = {}
    chunks: dict[str, ScoredChunk] = {}
    for ranking, scores, share in ((dense, d, weight), (sparse, s, 1.0 - weight)):
        for hit, value in zip(ranking, _unit(scores), strict=True):
            cid = hit.chunk.id
            fused[cid] = fused.get(cid, 0.0) + share * float(value)
            chunks.setdefault(cid, hit)
    order = sorted(fused, key=lambda cid: -fused[cid])[:top_k]
    return [replace(chunks[cid], score=fused[cid]) for cid in order]


def dense_share(dense_evidence: float, sparse_evidence: float, prior: float = 0.5) -> float:
    """The dense ranking's weight, 0..1: ``p e_d**POWER / (p e_d**POWER + (1 - p) e_s**POWER)``
    with ``p`` the ``prior`` (0.5: the evidences alone decide; labels can move it, see
    ``llmops eval retrieval --tune``)."""
    d, s = prior * dense_evidence**POWER, (1.0 - prior) * sparse_evidence**POWER
    if d + s <= 0.0:  # a prior of 0 or 1 against no evidence: the prior decides
        return prior
    return d / (d + s)


def evidence(scores: np.ndarray) -> float:
    """How far the best score stands above the first ``HEAD`` scores' mean, in their
    standard deviations (at least ``FLOOR``)."""
    head = scores[:HEAD]
    spread = float(head.std()) if head.size > 1 else 0.0
    if spread <= 1e-12:
        return FLOOR
    return max(float(head[0] - head.mean()) / spread, FLOOR)


def _scores(ranking: Sequence[ScoredChunk]) -> np.ndarray:
    return np.array([hit.score for hit in ranking], dtype=np.float64)


def _unit(scores: np.ndarray) -> np.ndarray:
    """Scores scaled to 0..1 (all 1.0 when they are equal)."""
    low, high = (float(scores.min()), float(scores.max())) if scores.size else (0.0, 0.0)
    if high - low <= 1e-12:
        return np.ones_like(scores)
    return (scores - low) / (high - low)
