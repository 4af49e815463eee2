"""`llmops models list / show / promote / rollback` through Typer's runner, on a real MLflow
registry; the registry comes from --tracking-uri, MLFLOW_TRACKING_URI or .llmops/ here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.models import ModelRegistry, local_tracking_uri
from tests.models.conftest import Register, fit_model

runner = CliRunner()


def models(*args: str, registry: ModelRegistry | None = None) -> tuple[int, str, str]:
    """Run ``llmops models ARGS``; returns exit code, stdout and everything printed."""
    uri = ["--tracking-uri", registry.tracking_uri] if registry else []
    result = runner.invoke(app, ["models", *args, *uri])
    return result.exit_code, result.stdout, result.output


def test_list_and_show(registry: ModelRegistry, register: Register):
    register("cli-listed", metrics={"roc_auc": 0.91})
    register("cli-listed", seed=1, metrics={"roc_auc": 0.92, "f1": 0.5})
    code, out, _ = models("list", "--json", registry=registry)
    assert code == 0
    listed = {m["name"]: m for m in json.loads(out)}
    assert listed["cli-listed"] == {
        "name": "cli-listed",
        "versions": 2,
        "newest": 2,
        "aliases": {"candidate": 2},
    }
    code, out, _ = models("list", "cli-listed", "--json", registry=registry)
    versions = json.loads(out)
    assert [(v["version"], v["aliases"]) for v in versions] == [(2, ["candidate"]), (1, [])]
    assert versions[0]["metrics"] == {"roc_auc": 0.92, "f1": 0.5}
    code, out, _ = models("list", "cli-listed", registry=registry)
    assert code == 0 and "roc_auc 0.92" in out and "candidate" in out
    code, out, _ = models("show", "cli-listed@1", "--json", registry=registry)
    shown = json.loads(out)
    assert (shown["version"], shown["tags"]["metric.roc_auc"]) == (1, "0.91")
    assert shown["run_id"] and shown["source"].endswith("/artifacts/model")
    code, out, _ = models("show", "cli-listed", registry=registry)
    assert code == 0 and "cli-listed version 2" in out and "metric.f1" in out


def test_promote_and_rollback_say_what_moved(registry: ModelRegistry, register: Register):
    register("cli-rollout")
    register("cli-rollout", seed=1)
    moves = [
        ("promote", "cli-rollout", "--from", "1"),
        ("promote", "cli-rollout"),
        ("rollback", "cli-rollout"),
    ]
    printed = [models(*move, registry=registry)[1].strip() for move in moves]
    assert printed == [
        "cli-rollout: production - -> 1",
        "cli-rollout: production 1 -> 2 (previous: 1)",
        "cli-rollout: production 2 -> 1 (rolled back 2)",
    ]
    code, _, output = models("rollback", "cli-rollout", registry=registry)
    assert code == 1 and "error: model 'cli-rollout' has no previous version" in output


def test_unknown_model_is_an_error_naming_the_registered_ones(
    registry: ModelRegistry, register: Register
):
    register("cli-known")
    code, _, output = models("show", "cli-knwon@production", registry=registry)
    assert code == 1
    assert "error: no model 'cli-knwon'" in output and "cli-known" in output


def test_tracking_uri_from_the_environment(
    registry: ModelRegistry, register: Register, monkeypatch: pytest.MonkeyPatch
):
    register("cli-from-env")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    code, out, _ = models("list", "--json")
    assert code == 0 and "cli-from-env" in {m["name"] for m in json.loads(out)}


def test_default_registry_lives_in_dot_llmops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model, rows = fit_model()
    ModelRegistry(local_tracking_uri(tmp_path)).log_and_register(
        "local", model, input_example=rows.head(3), metrics={}, params={}, tags={}
    )
    code, out, _ = models("list", "--json")
    assert code == 0 and [m["name"] for m in json.loads(out)] == ["local"]
    assert [p.name for p in tmp_path.iterdir()] == [".llmops"]  # no ./mlruns, no ./mlflow.db
    assert sorted(p.name for p in (tmp_path / ".llmops").iterdir()) == ["mlartifacts", "mlflow.db"]


def test_help_teaches_with_examples():
    result = runner.invoke(app, ["models", "--help"])
    assert all(command in result.output for command in ("list", "show", "promote", "rollback"))
    for command in ("list", "show", "promote", "rollback"):
        assert "Example: `llmops models" in runner.invoke(app, ["models", command, "--help"]).output
