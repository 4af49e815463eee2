"""The model registry over a real MLflow (SQLite) registry: registering, the aliases candidate /
production / previous, promote and rollback, loading, and the errors that say what exists."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pytest
from mlflow.models import get_model_info
from sklearn.pipeline import Pipeline

from llmops.errors import RegistryError
from llmops.models import ModelRegistry
from llmops.models._mlflow import requirements
from tests.models.conftest import Register, fit_model


def aliases_by_version(registry: ModelRegistry, name: str) -> dict[int, tuple[str, ...]]:
    return {v.version: v.aliases for v in registry.versions(name)}


def git_head() -> str | None:
    found = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def test_each_registration_is_the_new_candidate(registry: ModelRegistry, register: Register):
    first = register("moves")
    second = register("moves", seed=1)
    assert (first.version, first.aliases) == (1, ("candidate",))
    assert (second.version, second.aliases) == (2, ("candidate",))
    assert aliases_by_version(registry, "moves") == {2: ("candidate",), 1: ()}
    assert [v.version for v in registry.versions("moves")] == [2, 1]  # newest first
    assert "moves" in registry.names()


def test_version_keeps_tags_metrics_and_its_run(
    registry: ModelRegistry, register: Register, registry_dir: Path
):
    metrics = {"roc_auc": 0.93, "f1": 0.8125}
    tags = {"data_sha256": "9f86d081", "owner": "ml-team"}
    version = register("tagged", metrics=metrics, params={"C": 0.5, "penalty": "l2"}, tags=tags)
    assert version.tags["metric.roc_auc"] == "0.93"
    assert version.metrics == metrics
    assert version.tags["data_sha256"] == "9f86d081" and version.tags["owner"] == "ml-team"
    assert version.tags.get("git.commit") == git_head()
    assert (
        version.source
        == f"{(registry_dir / 'artifacts').as_uri()}/{version.run_id}/artifacts/model"
    )
    assert abs(version.created - time.time()) < 120
    run = mlflow.MlflowClient(registry.tracking_uri).get_run(version.run_id)
    assert run.data.metrics == metrics
    assert run.data.params == {"C": "0.5", "penalty": "l2"}
    assert run.info.status == "FINISHED"


def test_no_git_commit_outside_a_checkout(
    register: Register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    assert "git.commit" not in register("no-git").tags


def test_promote_twice_keeps_the_old_production_as_previous(
    registry: ModelRegistry, register: Register
):
    register("promoted")
    first = registry.promote("promoted")
    assert (first.version, set(first.aliases)) == (1, {"candidate", "production"})
    register("promoted", seed=1)
    second = registry.promote("promoted")
    assert second.version == 2
    assert aliases_by_version(registry, "promoted") == {
        2: ("candidate", "production"),
        1: ("previous",),
    }


def test_promote_a_version_number_to_another_alias(registry: ModelRegistry, register: Register):
    register("staged")
    register("staged", seed=1)
    staged = registry.promote("staged", "1", to="staging")
    assert (staged.version, staged.aliases) == (1, ("staging",))
    assert aliases_by_version(registry, "staged") == {2: ("candidate",), 1: ("staging",)}


def test_rollback_puts_previous_back_once(registry: ModelRegistry, register: Register):
    register("rolled")
    registry.promote("rolled")
    register("rolled", seed=1)
    registry.promote("rolled")
    restored = registry.rollback("rolled")
    assert (restored.version, restored.aliases) == (1, ("production",))
    assert aliases_by_version(registry, "rolled") == {2: ("candidate",), 1: ("production",)}
    with pytest.raises(RegistryError, match="no previous version to roll back to"):
        registry.rollback("rolled")


def test_get_by_number_alias_or_latest(registry: ModelRegistry, register: Register):
    register("fetched")
    register("fetched", seed=1)
    assert registry.get("fetched", "1").version == 1
    assert registry.get("fetched", "candidate").version == 2
    assert registry.get("fetched", "latest").version == 2


def test_unknown_model_or_reference_says_what_exists(registry: ModelRegistry, register: Register):
    register("known")
    with pytest.raises(RegistryError) as unknown_model:
        registry.get("knwon", "1")
    message = str(unknown_model.value)
    assert "no model 'knwon'" in message and registry.tracking_uri in message
    assert "known" in message.split("registered:")[1] and "did you mean 'known'?" in message
    with pytest.raises(RegistryError) as unknown_number:
        registry.get("known", "9")
    assert str(unknown_number.value) == (
        "model 'known' has no version or alias '9'; versions: 1; aliases: candidate (1)"
    )
    with pytest.raises(RegistryError, match="did you mean 'candidate'"):
        registry.get("known", "candidat")


def test_load_predicts_like_the_original(registry: ModelRegistry):
    model, rows = fit_model(seed=3)
    version = registry.log_and_register(
        "loaded", model, input_example=rows.head(3), metrics={}, params={}, tags={}
    )
    loaded = registry.load("loaded", "candidate")
    np.testing.assert_array_equal(loaded.predict_proba(rows), model.predict_proba(rows))
    info = get_model_info(urlparse(version.source).path)  # MLflow's file:// check fails
    assert info.signature.inputs.input_names() == ["age", "hours", "job"]
    assert info.saved_input_example_info is not None


def test_register_into_the_callers_run(registry: ModelRegistry, register: Register, tmp_path):
    client = mlflow.MlflowClient(registry.tracking_uri)
    experiment = client.create_experiment("callers", artifact_location=tmp_path.as_uri())
    run_id = client.create_run(experiment).info.run_id
    version = register("in-run", run_id=run_id)
    assert version.run_id == run_id
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"  # the caller ends its own run
    assert run.data.metrics == {} and run.data.params == {}  # and logs its own
    with pytest.raises(RegistryError, match="already holds a logged model"):
        register("in-run", run_id=run_id)


def test_dead_registry_fails_fast_and_says_why():
    with socket.socket() as probe:  # a port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with pytest.raises(RegistryError) as failed:
        ModelRegistry(uri).names()
    assert time.perf_counter() - started < 5
    assert f"cannot reach the MLflow registry at {uri}" in str(failed.value)
    assert "connection refused" in str(failed.value).lower()


def test_requirements_pin_a_non_sklearn_estimator():
    lightgbm = pytest.importorskip("lightgbm")
    boosted = Pipeline([("model", lightgbm.LGBMClassifier())])
    pins = requirements(boosted)
    assert any(pin.startswith("lightgbm==") for pin in pins)
    assert any(pin.startswith("scikit-learn==") for pin in pins)
    assert not any(pin.startswith("lightgbm") for pin in requirements(fit_model()[0]))


_OPEN_NEW_STORE = """
import sys, mlflow
from llmops.models import prepare_store
prepare_store(sys.argv[1])
client = mlflow.MlflowClient(tracking_uri=sys.argv[1], registry_uri=sys.argv[1])
client.search_registered_models()
print(client.get_experiment("0").name)
"""


def test_first_opens_of_a_new_sqlite_store_at_once_all_succeed(tmp_path: Path):
    """Four processes open one new SQLite store together: its tables are made once (under
    the lock), not by four migrations racing on ``alembic_version``."""
    uri = f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    command = [sys.executable, "-c", _OPEN_NEW_STORE, uri]
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    opens = [subprocess.Popen(command, env=env, text=True, **output) for _ in range(4)]
    outputs = [process.communicate(timeout=180)[0] for process in opens]
    assert [process.returncode for process in opens] == [0] * 4, outputs
    assert all(output.strip().endswith("Default") for output in outputs), outputs
