"""Tuning retrieval from labels on cached rankings: the grid, the choice, the written section."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmops.build import load_config
from llmops.config.schema import RetrievalConfig
from llmops.pipelines.tune_retrieval import (
    Lists,
    pick,
    score,
    settings_grid,
    tuned,
    write_section,
)
from llmops.types import Chunk, ScoredChunk


def hit(doc: str, score: float) -> ScoredChunk:
    chunk = Chunk(id=doc, document_id=f"f.jsonl#{doc}", text=doc, source="f.jsonl", index=0)
    return ScoredChunk(chunk, score)


def misleading_bm25(queries: int) -> tuple[dict[str, Lists], dict[str, dict[str, int]]]:
    """Dense search ranks each query's one relevant document first, by a small margin over
    near-equal neighbours; BM25 is sure of a wrong document and misses the right one."""
    lists, qrels = {}, {}
    for q in range(queries):
        rel = f"rel{q}"
        dense = [hit(rel, 0.70)] + [hit(f"d{q}-{i}", 0.69 - 0.001 * i) for i in range(30)]
        sparse = [hit(f"s{q}-0", 40.0)] + [hit(f"s{q}-{i}", 6.0 - 0.1 * i) for i in range(1, 30)]
        lists[str(q)], qrels[str(q)] = Lists(dense, sparse), {rel: 1}
    return lists, qrels


def test_tuning_picks_the_retriever_that_ranks_the_labels_right() -> None:
    lists, qrels = misleading_bm25(12)
    base = RetrievalConfig(fusion="weighted", dense_weight=0.3)  # leans on BM25
    assert sum(score(base, lists, qrels).values()) < len(qrels)
    chosen, trials, gain = pick(settings_grid(base), lists, qrels)
    # dense search is right on every query, and the first of the grid's perfect settings
    assert tuned(chosen) == {"mode": "dense"}
    assert gain.significant and gain.mean_b == 1.0
    assert set(score(chosen, lists, qrels).values()) == {1.0}
    assert trials[0].score == 1.0 and trials[-1].score < 1.0
    assert [t.score for t in trials] == sorted((t.score for t in trials), reverse=True)


def test_the_app_setting_wins_a_tie() -> None:
    lists, qrels = misleading_bm25(3)
    base = RetrievalConfig(mode="dense", top_k=7)
    chosen, _, _ = pick(settings_grid(base), lists, qrels)
    assert chosen is base


def test_a_gain_on_one_query_of_many_keeps_the_app_setting() -> None:
    lists, qrels = misleading_bm25(40)
    base = RetrievalConfig(mode="dense")
    # one query's relevant document: second for dense search, first for BM25
    lists["0"] = Lists([hit("x", 0.71), *lists["0"].dense], [hit("rel0", 50.0)])
    chosen, trials, gain = pick(settings_grid(base), lists, qrels)
    assert trials[0].score > sum(score(base, lists, qrels).values()) / len(qrels)
    assert gain.diff > 0 and not gain.significant
    assert chosen is base


def test_grid_settings_are_valid_and_name_only_what_they_use() -> None:
    base = RetrievalConfig(top_k=6)
    grid = settings_grid(base)
    assert grid[0] is base
    for setting in grid:
        assert RetrievalConfig.model_validate(setting.model_dump(by_alias=True)) == setting
        assert setting.top_k == 6  # untuned fields keep the app's values
    fields = {tuple(tuned(s)) for s in grid}
    assert fields == {
        ("mode",),
        ("mode", "fusion", "rrf_k", "candidates"),
        ("mode", "fusion", "dense_weight", "candidates"),
    }
    assert {s.fusion for s in grid if s.mode == "hybrid"} == {"adaptive", "rrf", "weighted"}


def test_written_section_replaces_only_the_retrieval_settings(tmp_path: Path) -> None:
    config = tmp_path / "app.yaml"
    (tmp_path / "docs").mkdir()
    app = {
        "name": "docs",
        "sources": [{"path": "docs"}],
        "retrieval": {"top_k": 3, "mode": "dense"},
    }
    config.write_text(yaml.safe_dump(app))
    section = {"top_k": 3, "mode": "hybrid", "fusion": "rrf", "rrf_k": 30, "candidates": 50}
    write_section(config, section)
    written = yaml.safe_load(config.read_text())
    assert written == {**app, "retrieval": section}
    loaded = load_config(config).loaded.app.retrieval
    assert (loaded.mode, loaded.fusion, loaded.rrf_k, loaded.top_k) == ("hybrid", "rrf", 30, 3)
