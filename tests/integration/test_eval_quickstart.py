"""The shipped suite, eval/quickstart.yaml, end to end offline: the quickstart app (bundled
MiniLM, BM25, extractive answers) over datasets/guide-qa.jsonl, its gates deciding the exit
code. The app's data_dir and the results go to a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llmops.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_suite_runs_offline(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    config["data_dir"] = str(tmp_path / "data")
    config["sources"][0]["path"] = str(ROOT / "datasets" / "guide")
    (tmp_path / "app.yaml").write_text(yaml.safe_dump(config))
    suite = yaml.safe_load((ROOT / "eval" / "quickstart.yaml").read_text())
    suite.update(app="app.yaml", results_dir="results", variants=[])
    suite["dataset"]["path"] = str(ROOT / "datasets" / "guide-qa.jsonl")
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))

    result = CliRunner().invoke(app, ["eval", "run", str(tmp_path / "suite.yaml"), "--no-mlflow"])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "results").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = summary["variants"]["baseline"]["metrics"]
    assert metrics["hit@4"]["mean"] >= 0.8 and metrics["hit@4"]["n"] == 23
    assert metrics["abstention_accuracy"]["n"] == 28
    assert all(line.startswith("PASS") for line in summary["gates"]["baseline"])
