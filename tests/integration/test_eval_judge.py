"""ragas' LLM-judged metrics with a judge served over the OpenAI API (a rule-based stub
started by the test), the disk cache proven by a re-run that calls the judge zero times, and
ragas' non-LLM context metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.pipelines.eval_run import run_suite
from tests.conftest import HASHING, ConfigWriter
from tests.eval_suite_data import write_suite
from tests.stubs.judge_server import JudgeStub, serve_judge

pytest.importorskip("ragas")
JUDGED = ["faithfulness", "answer_relevancy", "context_precision", "context_recall"]
NON_LLM = ["nonllm_context_precision", "nonllm_context_recall"]


def _suite(tmp_path: Path, write_config: ConfigWriter, url: str) -> Path:
    # min_score -1: the extractive generator always answers (the hashing embedder scores low)
    config = write_config(embedder=HASHING, generator={"type": "extractive", "min_score": -1.0})
    judge = {"type": "openai_compat", "base_url": url, "model": "judge-tiny", "backoff_s": 0.01}
    metrics = ["hit@2", *JUDGED, *NON_LLM]
    return write_suite(tmp_path, config, metrics=metrics, judge=judge, gates=[])


def test_judged_metrics_and_a_cached_rerun(tmp_path: Path, write_config: ConfigWriter) -> None:
    first_stub = JudgeStub()
    with serve_judge(first_stub) as url:
        first = run_suite(_suite(tmp_path, write_config, url), track=False)
    assert first_stub.calls > 0
    assert first.params["judge"] == {
        "model": "judge-tiny",
        "calls": first_stub.calls,
        "cache_hits": first.params["judge"]["cache_hits"],
    }
    scores = {s.id: s.scores for s in first.samples["baseline"]}
    # the extractive answer quotes the retrieved chunk: every claim is supported
    assert scores["restore"]["faithfulness"] == 1.0
    assert scores["restore"]["context_recall"] == 1.0  # the reference is in the context
    assert scores["restore"]["context_precision"] is not None
    assert scores["restore"]["answer_relevancy"] is not None
    assert scores["flux"]["context_recall"] is None  # unanswerable: no reference answer
    assert scores["flux"]["faithfulness"] is not None  # it answered: its claims are judged
    for metric in JUDGED:
        assert metric in first.summaries["baseline"].metrics

    # a second judge on another port: every reply comes from the cache
    second_stub = JudgeStub()
    with serve_judge(second_stub) as url:
        second = run_suite(_suite(tmp_path, write_config, url), track=False)
    assert second_stub.calls == 0
    assert second.params["judge"]["calls"] == 0
    assert second.params["judge"]["cache_hits"] >= first_stub.calls
    assert {s.id: s.scores for s in second.samples["baseline"]} == scores
    assert second.run_dir != first.run_dir


def test_non_llm_context_metrics(tmp_path: Path, write_config: ConfigWriter) -> None:
    config = write_config(embedder=HASHING)
    result = run_suite(write_suite(tmp_path, config, metrics=NON_LLM, gates=[]), track=False)
    scores = {s.id: s.scores for s in result.samples["baseline"]}
    assert 0.0 <= (scores["restore"]["nonllm_context_recall"] or 0.0) <= 1.0
    assert scores["price"]["nonllm_context_recall"] is None  # no reference passage
