"""Log an evaluation run to MLflow: params (config hash, prompt, models, retrieval settings
per variant), metrics (means and CI bounds per variant, run figures, gate results) and the
run folder's files as artifacts.

Default store: SQLite in the app's data directory (``<data_dir>/mlflow.db``), artifacts beside
it in ``<data_dir>/mlartifacts`` — always an explicit location: MLflow would otherwise write
``./mlruns`` wherever it is started. A ``--tracking-uri http://...`` server keeps its own
artifact store. MLflow's telemetry is switched off.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from llmops.deps import require
from llmops.evaluation.results import EvalRun

EXPERIMENT_PREFIX = "llmops-eval-"
_UNSAFE = re.compile(r"[^\w.\- /:]")
MAX_PARAM = 500


def default_tracking_uri(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'mlflow.db').resolve()}"


def metric_key(*parts: str) -> str:
    """An MLflow-safe metric or param name (``@`` and the like are not allowed there)."""
    return "/".join(_UNSAFE.sub("_", p.replace("@", "_at_")) for p in parts)


def log_run(run: EvalRun, tracking_uri: str | None, data_dir: Path) -> str:
    """Log ``run`` and return the MLflow run id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow = require("mlflow", "eval")
    entities = require("mlflow.entities", "eval")
    uri = tracking_uri or default_tracking_uri(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = _experiment(client, EXPERIMENT_PREFIX + run.suite.spec.name, uri, data_dir)
    tags = {"llmops.suite": run.suite.spec.name, "llmops.passed": str(run.passed).lower()}
    created = client.create_run(experiment_id, run_name=run.run_dir.name, tags=tags)
    run_id: str = created.info.run_id
    params = [entities.Param(k, v) for k, v in _flat_params(run.params)]
    metrics = [entities.Metric(k, v, 0, 0) for k, v in _metrics(run)]
    for start in range(0, max(len(metrics), len(params)), 100):  # log_batch takes 100 params
        client.log_batch(
            run_id, metrics=metrics[start : start + 100], params=params[start : start + 100]
        )
    for path in sorted(run.run_dir.iterdir()):
        if path.is_file():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _experiment(client: Any, name: str, uri: str, data_dir: Path) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
    location = (data_dir / "mlartifacts").resolve().as_uri() if local else None
    return str(client.create_experiment(name, artifact_location=location))


def _flat_params(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flat_params(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield metric_key(prefix), str(value)[:MAX_PARAM]


def _metrics(run: EvalRun) -> Iterator[tuple[str, float]]:
    for variant, summary in run.summaries.items():
        for name, s in summary.metrics.items():
            yield metric_key(variant, name), s.mean
            yield metric_key(variant, name, "ci_low"), s.low
            yield metric_key(variant, name, "ci_high"), s.high
        for name, value in summary.run.items():
            yield metric_key(variant, name), value
    for variant, comparisons in run.comparisons.items():
        for name, c in comparisons.items():
            yield metric_key(variant, name, "diff"), c.diff
            yield metric_key(variant, name, "p_value"), c.p_value
    yield "gates_passed", float(run.passed)
