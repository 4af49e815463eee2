"""Fusing rankings: reciprocal rank, weighted normalised scores, phrasings of one question."""

from __future__ import annotations

import pytest

from llmops.rag.fusion import min_max, rrf_fuse, weighted_fuse
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
