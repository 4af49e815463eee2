"""Tuning retrieval from labels on cached rankings: the grid, the choice, the written section."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmops.build import load_config
from llmops.config.schema import RetrievalConfig
from llmops.pipelines.tune_retrieval import (
    APP_EMBEDDER,
    Lists,
    TunedEmbedder,
    candidates,
    pick,
    score,
    settings_grid,
    tune,
    tuned,
    write_sections,
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
    chosen, trials, gain = pick(candidates(base), {APP_EMBEDDER: lists}, qrels)
    # dense search is right on every query, and the first of the grid's perfect settings
    assert tuned(chosen.setting) == {"mode": "dense"}
    assert gain.significant and gain.mean_b == 1.0
    assert set(score(chosen.setting, lists, qrels).values()) == {1.0}
    assert trials[0].score == 1.0 and trials[-1].score < 1.0
    assert [t.score for t in trials] == sorted((t.score for t in trials), reverse=True)


def test_the_app_setting_wins_a_tie() -> None:
    lists, qrels = misleading_bm25(3)
    base = RetrievalConfig(mode="dense", top_k=7)
    chosen, _, _ = pick(candidates(base), {APP_EMBEDDER: lists}, qrels)
    assert chosen.setting is base


def test_a_gain_on_one_query_of_many_keeps_the_app_setting() -> None:
    lists, qrels = misleading_bm25(40)
    base = RetrievalConfig(mode="dense")
    # one query's relevant document: second for dense search, first for BM25
    lists["0"] = Lists([hit("x", 0.71), *lists["0"].dense], [hit("rel0", 50.0)])
    chosen, trials, gain = pick(candidates(base), {APP_EMBEDDER: lists}, qrels)
    assert trials[0].score > sum(score(base, lists, qrels).values()) / len(qrels)
    assert gain.diff > 0 and not gain.significant
    assert chosen.setting is base


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
    write_sections(config, {"retrieval": section})
    written = yaml.safe_load(config.read_text())
    assert written == {**app, "retrieval": section}
    loaded = load_config(config).loaded.app.retrieval
    assert (loaded.mode, loaded.fusion, loaded.rrf_k, loaded.top_k) == ("hybrid", "rrf", 30, 3)


def _split(qrels: dict[str, dict[str, int]]) -> tuple[dict[str, dict[str, int]], ...]:
    order = sorted(qrels, key=int)
    return {q: qrels[q] for q in order[:20]}, {q: qrels[q] for q in order[20:]}


def test_a_fine_tuned_embedder_that_ranks_better_is_chosen_with_its_section(
    tmp_path: Path,
) -> None:
    # the app's embedder misses every relevant document; the fine-tuned one ranks it first
    lists, qrels = misleading_bm25(30)
    blind = {q: Lists([hit(f"x{q}-{i}", 0.8 - 0.01 * i) for i in range(30)], []) for q in lists}
    section = {"type": "sentence_transformers", "model": str(tmp_path / "tuned")}
    embedder = TunedEmbedder(lists, section)
    base = RetrievalConfig(mode="dense")
    report = tune(base, blind, _split(qrels), ("select", "test"), embedder=embedder)
    assert report.embedder_section == section
    assert tuned(report.chosen) == {"mode": "dense"}
    assert report.trials[0].settings == {"mode": "dense", "embedder": "fine-tuned"}
    c = report.comparison  # on the 10 queries neither the training nor the choice saw
    assert (c.n, c.mean_a, c.mean_b) == (10, 0.0, 1.0)
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump({"name": "docs", "sources": [{"path": "docs"}]}))
    (tmp_path / "docs").mkdir()
    (tmp_path / "tuned").mkdir()  # the model folder fine_tune would have written
    write_sections(config, {"retrieval": report.yaml_section, "embedder": section})
    assert load_config(config).loaded.app.embedder.model_dump() == section


def test_a_fine_tuned_embedder_that_ranks_worse_is_not_chosen(tmp_path: Path) -> None:
    lists, qrels = misleading_bm25(30)
    blind = {q: Lists([hit(f"x{q}-{i}", 0.8 - 0.01 * i) for i in range(30)], []) for q in lists}
    embedder = TunedEmbedder(blind, {"type": "sentence_transformers"})
    report = tune(
        RetrievalConfig(mode="dense"), lists, _split(qrels), ("a", "b"), embedder=embedder
    )
    assert report.embedder_section is None and report.comparison.diff == 0.0
    assert all(t.settings.get("embedder") != "fine-tuned" or t.score < 1.0 for t in report.trials)
