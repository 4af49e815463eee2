"""Eval runs logged to MLflow: the default SQLite store in the app's data_dir, and a real
`mlflow server` on 127.0.0.1 read back with MlflowClient."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from tests.conftest import HASHING, ConfigWriter
from tests.eval_suite_data import write_suite
from tests.up_server import free_port

mlflow = pytest.importorskip("mlflow")
runner = CliRunner()


def _run_id(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("mlflow run: ")]
    assert lines, output
    return lines[0].removeprefix("mlflow run: ")


def _check_run(client: mlflow.MlflowClient, run_id: str) -> None:
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert len(run.data.params["config_hash"]) == 12
    assert run.data.params["variants.baseline.generator"] == "extractive"
    assert run.data.params["variants.baseline.retrieval.top_k"] == "4"
    metrics = run.data.metrics
    assert 0.0 <= metrics["baseline/hit_at_2"] <= 1.0
    assert metrics["baseline/hit_at_2/ci_low"] <= metrics["baseline/hit_at_2"]
    assert metrics["gates_passed"] == 1.0
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.html", "report.md", "summary.json", "samples-baseline.jsonl"} <= names


@pytest.mark.slow
def test_default_store_is_sqlite_in_the_data_dir(
    tmp_path: Path, write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    suite = write_suite(tmp_path, write_config(embedder=HASHING))
    result = runner.invoke(app, ["eval", "run", str(suite)])
    assert result.exit_code == 0, result.output
    store = tmp_path / "data" / "mlflow.db"
    assert store.is_file() and (tmp_path / "data" / "mlartifacts").is_dir()
    assert not (tmp_path / "mlruns").exists()  # nothing written where the command ran
    _check_run(mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}"), _run_id(result.stdout))


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real tracking server; stopped by process group (its workers outlive a SIGTERM)."""
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "server-artifacts"),
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start: {(tmp_path / 'server.log').read_text()}"
                )
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # workers that outlived the SIGTERM
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
@pytest.mark.integration
def test_run_logged_to_a_tracking_server(
    tmp_path: Path, write_config: ConfigWriter, mlflow_server: str
) -> None:
    suite = write_suite(tmp_path, write_config(embedder=HASHING))
    result = runner.invoke(app, ["eval", "run", str(suite), "--tracking-uri", mlflow_server])
    assert result.exit_code == 0, result.output
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    run_id = _run_id(result.stdout)
    _check_run(client, run_id)
    experiment = client.get_experiment(client.get_run(run_id).info.experiment_id)
    assert experiment.name == "llmops-eval-tiny"
    assert not (tmp_path / "data" / "mlflow.db").exists()  # the server, not the local store
    local = client.download_artifacts(run_id, "report.md", str(tmp_path))
    assert Path(local).read_text().startswith("# Eval run: tiny — PASSED")
