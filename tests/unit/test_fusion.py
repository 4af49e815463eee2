"""Fusing rankings: reciprocal rank, weighted normalised scores, adaptive weights, the
query-time check for a ranking without evidence, phrasings of one question."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from llmops.config.schema import Fusion
from llmops.rag.adaptive_fusion import adaptive_fuse, dense_share, evidence
from llmops.rag.fusion import (
    HYBRID_FUSIONS,
    FusionSettings,
    fuse_hybrid,
    min_max,
    rrf_fuse,
    weighted_fuse,
)
from llmops.rag.search import SearchParams, _fuse_phrasings
from llmops.types import Chunk, ScoredChunk


def hit(cid: str, score: float) -> ScoredChunk:
    return ScoredChunk(Chunk(id=cid, document_id=cid, text=cid, source="s.md", index=0), score)


def ids(hits: list[ScoredChunk]) -> list[str]:
    return [h.chunk.id for h in hits]


def test_rrf_sums_reciprocal_ranks() -> None:
    dense = [hit("a", 0.9), hit("b", 0.5), hit("c", 0.4)]
    sparse = [hit("b", 12.0), hit("c", 3.0)]
    fused = rrf_fuse([dense, sparse], top_k=3, k=60)
    # b: 1/62 + 1/61 = 0.032522; c: 1/63 + 1/62 = 0.032002; a: 1/61 = 0.016393
    assert ids(fused) == ["b", "c", "a"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert fused[2].score == pytest.approx(1 / 61)
    assert ids(rrf_fuse([dense, sparse], top_k=1)) == ["b"]


def test_min_max_scales_each_ranking_to_unit_range() -> None:
    assert min_max([hit("a", 3.0), hit("b", 2.0), hit("c", 1.0)]) == [1.0, 0.5, 0.0]
    assert min_max([hit("a", 0.7), hit("b", 0.7)]) == [1.0, 1.0]
    assert min_max([]) == []


def test_weighted_fusion_counts_margins_not_only_positions() -> None:
    dense = [hit("a", 0.80), hit("b", 0.79), hit("c", 0.40)]
    sparse = [hit("b", 20.0), hit("c", 19.0), hit("d", 2.0)]
    # dense normalised: a 1, b 0.975, c 0; sparse: b 1, c 17/18 = 0.9444, d 0
    # weights 0.5/0.5: b 0.9875, a 0.5, c 0.4722, d 0
    fused = weighted_fuse([dense, sparse], (0.5, 0.5), top_k=4)
    assert ids(fused) == ["b", "a", "c", "d"]
    assert fused[0].score == pytest.approx(0.5 * 0.975 + 0.5)
    assert fused[2].score == pytest.approx(0.5 * 17 / 18)
    # RRF sees c at ranks 3 and 2 and ranks it above a (rank 1 once): positions only
    assert ids(rrf_fuse([dense, sparse], top_k=4))[:2] == ["b", "c"]


def test_weight_one_reproduces_the_dense_order() -> None:
    dense = [hit("a", 0.8), hit("b", 0.6), hit("c", 0.5)]
    sparse = [hit("c", 9.0), hit("d", 8.0)]
    fused = weighted_fuse([dense, sparse], (1.0, 0.0), top_k=3)
    assert ids(fused) == ["a", "b", "c"]


def test_phrasings_fuse_by_rank_and_keep_the_best_score() -> None:
    alone = [hit("a", 0.9), hit("b", 0.5)]
    with_history = [hit("b", 0.8), hit("c", 0.7)]
    fused = _fuse_phrasings([alone, with_history], depth=3)
    assert ids(fused) == ["b", "a", "c"]  # twice beats once
    assert [h.score for h in fused] == [0.8, 0.9, 0.7]


def test_search_depth_covers_every_later_stage() -> None:
    assert SearchParams(top_k=4).depth == 4
    assert SearchParams(top_k=4, mmr=True, fetch_k=20).depth == 20
    assert SearchParams(top_k=4, rerank=True, rerank_top_n=30, mmr=True, fetch_k=20).depth == 30


@pytest.mark.parametrize("method", sorted(HYBRID_FUSIONS))
def test_a_ranking_without_evidence_leaves_the_other_as_it_is(method: str) -> None:
    dense = [hit("a", 0.8), hit("b", 0.6), hit("c", 0.5)]
    settings = FusionSettings(method)
    # BM25 found nothing, or only chunks sharing no term with the question (score 0)
    for sparse in ([], [hit("c", 0.0), hit("d", 0.0)]):
        assert fuse_hybrid(dense, sparse, 2, settings) == dense[:2]
    sparse = [hit("d", 7.0), hit("a", 3.0)]
    assert fuse_hybrid([], sparse, 5, settings) == sparse
    assert fuse_hybrid([hit("a", 0.0)], sparse, 5, settings) == sparse


def test_every_configurable_fusion_has_an_implementation() -> None:
    assert set(HYBRID_FUSIONS) == set(get_args(Fusion))


def test_adaptive_fusion_trusts_the_ranking_whose_best_hit_stands_out() -> None:
    # dense: ten near-equal similarities (no clear winner); BM25: one chunk far ahead
    dense = [hit(f"d{i}", 0.60 - 0.001 * i) for i in range(10)]
    sparse = [hit("s0", 30.0)] + [hit(f"s{i}", 5.0 - 0.1 * i) for i in range(1, 10)]
    assert evidence(np.array([h.score for h in sparse])) > evidence(
        np.array([h.score for h in dense])
    )
    fused = fuse_hybrid(dense, sparse, 3, FusionSettings("adaptive"))
    assert ids(fused)[0] == "s0"
    # the mirror image: a flat BM25 list and a dense list with a clear winner
    flat = [hit(f"s{i}", 5.0 - 0.01 * i) for i in range(10)]
    peaked = [hit("d0", 0.9)] + [hit(f"d{i}", 0.40 - 0.001 * i) for i in range(1, 10)]
    assert ids(fuse_hybrid(peaked, flat, 3, FusionSettings("adaptive")))[0] == "d0"


def test_adaptive_scores_stay_in_the_unit_range() -> None:
    dense = [hit("a", 0.9), hit("b", 0.3), hit("c", -0.2)]
    sparse = [hit("b", 11.0), hit("d", 2.0)]
    fused = adaptive_fuse(dense, sparse, 4)
    assert sorted(ids(fused)) == ["a", "b", "c", "d"]
    assert all(0.0 <= h.score <= 1.0 for h in fused)
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)


def test_the_adaptive_prior_moves_the_split_and_half_leaves_it_to_the_evidence() -> None:
    # two rankings with the same shape of evidence: the prior alone decides who leads
    dense = [hit("d0", 0.9)] + [hit(f"d{i}", 0.5 - 0.01 * i) for i in range(1, 10)]
    sparse = [hit("s0", 9.0)] + [hit(f"s{i}", 5.0 - 0.1 * i) for i in range(1, 10)]
    assert dense_share(2.0, 2.0) == 0.5 and dense_share(2.0, 1.0) == 0.8
    assert dense_share(2.0, 2.0, prior=0.8) == pytest.approx(0.8)
    leaning_dense = fuse_hybrid(dense, sparse, 2, FusionSettings("adaptive", dense_weight=0.9))
    leaning_bm25 = fuse_hybrid(dense, sparse, 2, FusionSettings("adaptive", dense_weight=0.1))
    assert ids(leaning_dense)[0] == "d0" and ids(leaning_bm25)[0] == "s0"
    assert dense_share(0.0, 0.0, prior=0.0) == 0.0  # no evidence, no dense prior: BM25
