"""`llmops experiment show` and `experiment shadow` read the experiment's stored state
without a server: traffic per variant, the canary's ramp with its reason, shadow runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from llmops import RAG
from llmops.cli.main import app
from tests.conftest import HASHING, ConfigWriter

runner = CliRunner()
DEAD: dict[str, Any] = {"type": "openai_compat", "model": "m", "max_retries": 0}
DEAD["base_url"] = "http://127.0.0.1:9/v1"  # nothing listens there


def serve_some(config: Path, users: int) -> None:
    with RAG.from_config(config) as rag:
        rag.ingest()
        for i in range(users):
            rag.query("How do I restore a backup?", user=f"u{i}")


def test_show_reports_the_canary_ramp_and_its_reason(write_config: ConfigWriter) -> None:
    experiment = {
        "name": "rollout",
        "strategy": "canary",
        "variants": {"stable": {}, "next": {"generator": DEAD}},
        "canary": {"variant": "next", "stages": [0.5, 1.0], "window": 10},
    }
    config = write_config(embedder=HASHING, experiment=experiment)
    serve_some(config, 30)
    shown = runner.invoke(app, ["experiment", "show", "-c", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "experiment rollout (canary)" in shown.output
    assert "canary next: stage 1/2, rolled back" in shown.output
    assert "last move: rolled back: error rate 1/1 requests exceeds 5.0%" in shown.output
    as_json = runner.invoke(app, ["experiment", "show", "-c", str(config), "--json"])
    report = json.loads(as_json.stdout)
    assert report["variants"]["stable"]["requests"] == 30  # and the one canary attempt
    assert report["variants"]["next"]["requests"] == 1


def test_shadow_lists_recent_runs(write_config: ConfigWriter) -> None:
    experiment = {
        "name": "shadowing",
        "strategy": "shadow",
        "variants": {"control": {}, "candidate": {"retrieval": {"top_k": 1}}},
        "shadow": {"variant": "candidate"},
    }
    config = write_config(embedder=HASHING, experiment=experiment)
    serve_some(config, 3)
    listed = runner.invoke(app, ["experiment", "shadow", "-c", str(config), "-n", "2"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("How do I restore a backup?") == 2
    assert "candidate (" in listed.output and "agreement" in listed.output
    shown = runner.invoke(app, ["experiment", "show", "-c", str(config)])
    assert "shadow candidate: 3 runs, 0 errors" in shown.output


def test_an_app_without_experiment_gets_a_clear_error(write_config: ConfigWriter) -> None:
    config = write_config(embedder=HASHING)
    result = runner.invoke(app, ["experiment", "show", "-c", str(config)])
    assert result.exit_code == 1 and "runs no experiment" in result.output
