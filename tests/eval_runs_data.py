"""Two real eval runs of an app over the test corpus, made by the real runner (``run_suite``,
no MLflow) into the folder the app reads them from (``evaluation.runs_dir``), for the
``/evals`` routes, their reader and the console's evaluations page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmops.pipelines.eval_run import run_suite
from tests.eval_suite_data import write_suite

RUNS_DIR = "runs"
PASSING = ["hit@2 >= 0.5", "p95_latency_ms <= 100000"]
FAILING = "exact_match >= 0.99"  # the extractive answers quote passages, never the reference
APP = {
    "embedder": {"type": "hashing"},
    "generator": {"type": "extractive", "min_score": 0.3},
    "evaluation": {"runs_dir": RUNS_DIR},
}


def two_runs(app: Path) -> list[Path]:
    """Run a suite over ``app`` twice, oldest first: with hybrid search and gates that pass,
    then with BM25 alone (on the tiny corpus the hashing embedder's scores keep many answers
    under ``min_score``, BM25's do not: the answers get better) and a gate that fails; both
    with a ``short`` variant (one sentence per answer). The app config keeps the second run's
    settings."""
    short = {"name": "short", "generator": {"type": "extractive", "max_sentences": 1}}
    folders = []
    for mode, gates in (("hybrid", PASSING), ("sparse", [*PASSING, FAILING])):
        _update(app, retrieval={"mode": mode})
        suite = write_suite(app.parent, app, gates=gates, results_dir=RUNS_DIR, variants=[short])
        folders.append(run_suite(suite, track=False).run_dir)
    return folders


def _update(config: Path, **sections: Any) -> None:
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, **sections}, sort_keys=False))
