"""Where new MLflow experiments keep their artifacts: beside the app's or job's data for a
database or folder store (never MLflow's default ./mlruns in whatever folder the command runs
from), the server's own store for a tracking server; the fine-tuning job follows the same rule
as eval runs (it sent PostgreSQL runs' artifacts to ./mlruns)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llmops.evaluation.tracking import artifact_root
from llmops.pipelines import finetune


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:////srv/mlflow.db",
        "postgresql+psycopg://postgres@127.0.0.1:5432/mlflow",
        "mysql+pymysql://u@db/mlflow",
        "/srv/mlruns",
        "file:///srv/mlruns",
    ],
)
def test_a_store_without_a_server_keeps_artifacts_beside_the_data(uri: str, tmp_path: Path) -> None:
    assert artifact_root(uri, tmp_path / "data") == (tmp_path / "data" / "mlartifacts").as_uri()


@pytest.mark.parametrize("uri", ["http://mlflow:5000", "https://mlflow.example", "databricks"])
def test_a_tracking_server_keeps_them_in_its_own_store(uri: str, tmp_path: Path) -> None:
    assert artifact_root(uri, tmp_path) is None


class RecordingClient:
    """The part of MlflowClient that starting a fine-tuning run uses."""

    def __init__(self) -> None:
        self.locations: list[str | None] = []
        self.params: dict[str, Any] = {}

    def get_experiment_by_name(self, name: str) -> None:
        return None

    def create_experiment(self, name: str, artifact_location: str | None = None) -> str:
        self.locations.append(artifact_location)
        return "1"

    def create_run(self, experiment_id: str, run_name: str) -> Any:
        return SimpleNamespace(info=SimpleNamespace(run_id="run-1"))

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.params[key] = value


def test_a_finetuning_run_on_postgresql_keeps_its_artifacts_in_the_output(tmp_path: Path) -> None:
    client = RecordingClient()
    job = SimpleNamespace(name="tiny", model_dump=lambda mode: {"name": "tiny", "lora": {"r": 4}})
    loaded: Any = SimpleNamespace(job=job)
    uri = "postgresql+psycopg://postgres@127.0.0.1:5432/mlflow"
    assert finetune._start_run(client, loaded, tmp_path / "out", uri) == "run-1"
    assert client.locations == [(tmp_path / "out" / "mlartifacts").as_uri()]
    assert client.params == {"name": "tiny", "lora.r": "4"}
