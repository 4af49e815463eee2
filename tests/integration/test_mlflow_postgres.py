"""MLflow on PostgreSQL, as replicas share it: an eval run logged by `llmops eval run` and a
classic model trained, registered and promoted by `llmops train` / `llmops models promote`,
all with the backend store `postgresql+psycopg://...` (psycopg 3, the `postgres` extra), then
read back by a second process through MLflow and straight from MLflow's tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from tests.conftest import HASHING, ConfigWriter
from tests.eval_suite_data import write_suite
from tests.ml.adult_like import adult_like
from tests.ml.test_train import write_app

mlflow = pytest.importorskip("mlflow")
psycopg = pytest.importorskip("psycopg")
runner = CliRunner()

READ_BACK = """
import json, sys
import mlflow
client = mlflow.MlflowClient(tracking_uri=sys.argv[1])
run = client.get_run(sys.argv[2])
version = client.get_model_version_by_alias("adult", "production")
print(json.dumps({
    "status": run.info.status,
    "hit": run.data.metrics["baseline/hit_at_2"],
    "artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
    "version": version.version,
    "aliases": sorted(version.aliases),
    "roc_auc": version.tags["metric.roc_auc"],
}))
"""


def sqlalchemy_url(url: str) -> str:
    """The libpq URL as MLflow's SQLAlchemy store takes it, naming the psycopg 3 driver."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.mark.slow
def test_eval_runs_and_model_registry_live_in_postgresql(
    tmp_path: Path, write_config: ConfigWriter, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = sqlalchemy_url(postgres_url)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")

    # (a) an eval run logged to MLflow (the first connection creates MLflow's tables)
    suite = write_suite(tmp_path, write_config(embedder=HASHING))
    result = runner.invoke(app, ["eval", "run", str(suite), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    (run_line,) = [line for line in result.stdout.splitlines() if line.startswith("mlflow run: ")]
    run_id = run_line.removeprefix("mlflow run: ")

    # (b) a model trained and registered as candidate, promoted to production
    model_root = tmp_path / "model"
    config = write_app(model_root, trials=2, gates='"roc_auc >= 0.75"')
    config.write_text(config.read_text() + f"registry: {{tracking_uri: '{uri}'}}\n")
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    assert "registered adult version 1 as candidate" in result.output
    result = runner.invoke(app, ["models", "promote", "adult", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert "adult: production - -> 1" in result.output

    # nothing went to ./mlruns: the artifacts are beside the runs' data dirs
    assert not (tmp_path / "cwd" / "mlruns").exists()

    # a second client, in another process, reads both back through MLflow
    read = subprocess.run(
        [sys.executable, "-c", READ_BACK, uri, run_id],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    back = json.loads(read.stdout.strip().splitlines()[-1])
    assert back["status"] == "FINISHED" and 0.0 <= back["hit"] <= 1.0
    assert {"report.html", "summary.json", "samples-baseline.jsonl"} <= set(back["artifacts"])
    assert back["version"] == 1 and back["aliases"] == ["candidate", "production"]
    assert float(back["roc_auc"]) >= 0.75

    # and the state is in PostgreSQL's tables, not in a file
    with psycopg.connect(postgres_url) as db:
        runs = dict(db.execute("SELECT run_uuid, status FROM runs").fetchall())
        assert runs[run_id] == "FINISHED"  # the eval run
        (trained,) = db.execute("SELECT run_id FROM model_versions WHERE name = 'adult'")
        assert runs[trained[0]] == "FINISHED"  # the training run that registered version 1
        assert db.execute("SELECT name FROM registered_models").fetchall() == [("adult",)]
        aliases = db.execute(
            "SELECT name, alias, version FROM registered_model_aliases ORDER BY alias"
        ).fetchall()
        assert aliases == [("adult", "candidate", 1), ("adult", "production", 1)]
        (hit,) = db.execute(
            "SELECT value FROM latest_metrics WHERE run_uuid = %s AND key = %s",
            (run_id, "baseline/hit_at_2"),
        ).fetchone()
        assert hit == back["hit"]

    # the promoted version serves: loaded from the registry on PostgreSQL
    from llmops.models.registry import ModelRegistry

    model = ModelRegistry(uri).load("adult", "production")
    assert set(model.predict(adult_like(5, seed=3).drop(columns=["Y"]))) <= {"<=50K", ">50K"}
