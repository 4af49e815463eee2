"""Log an evaluation run to MLflow: params (config hash, prompt, models, retrieval settings
per variant), metrics (means and CI bounds per variant, run figures, gate results) and the
run folder's files as artifacts.

Default store: SQLite in the app's data directory (``<data_dir>/mlflow.db``), artifacts beside
it in ``<data_dir>/mlartifacts`` — always an explicit location: MLflow would otherwise write
``./mlruns`` wherever it is started. A ``--tracking-uri http://...`` server keeps its own
artifact store. MLflow's telemetry is switched off.

A tracking store that cannot be reached loses nothing: the run's results are already in its
folder, and what would have been logged goes to ``<run_dir>/mlflow-pending.json`` (with the
error); ``llmops eval log RUN_DIR`` uploads it later. MLflow's HTTP retries are bounded
(``TRACKING_RETRIES`` tries, ``TRACKING_TIMEOUT_S`` each, unless its own ``MLFLOW_HTTP_*``
variables say otherwise), so a server that is down costs seconds, not MLflow's default minutes.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from llmops.deps import require
from llmops.evaluation.results import EvalRun

log = logging.getLogger(__name__)
EXPERIMENT_PREFIX = "llmops-eval-"
PENDING = "mlflow-pending.json"
TRACKING_RETRIES = 2
TRACKING_TIMEOUT_S = 20
_UNSAFE = re.compile(r"[^\w.\- /:]")
MAX_PARAM = 500


def default_tracking_uri(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'mlflow.db').resolve()}"


def metric_key(*parts: str) -> str:
    """An MLflow-safe metric or param name (``@`` and the like are not allowed there)."""
    return "/".join(_UNSAFE.sub("_", p.replace("@", "_at_")) for p in parts)


def log_run(run: EvalRun, tracking_uri: str | None, data_dir: Path) -> str | None:
    """Log ``run`` and return the MLflow run id; None when the tracking store failed (the
    record to upload later is then in ``<run_dir>/mlflow-pending.json``, see ``pending``)."""
    uri = tracking_uri or default_tracking_uri(data_dir)
    record = {
        "tracking_uri": uri,
        "data_dir": str(data_dir.resolve()),
        "experiment": EXPERIMENT_PREFIX + run.suite.spec.name,
        "run_name": run.run_dir.name,
        "tags": {"llmops.suite": run.suite.spec.name, "llmops.passed": str(run.passed).lower()},
        "params": dict(_flat_params(run.params)),
        "metrics": dict(_metrics(run)),
    }
    return upload(record, run.run_dir)


def upload(record: dict[str, Any], run_dir: Path, tracking_uri: str | None = None) -> str | None:
    """Log ``record`` (and ``run_dir``'s files as artifacts) to ``tracking_uri`` (default: the
    record's); None on failure, the record then kept in ``run_dir/mlflow-pending.json``."""
    uri = tracking_uri or record["tracking_uri"]
    started: list[str] = []
    try:
        run_id = _log(record, run_dir, uri, started)
    except Exception as exc:  # any failure of the store: keep the record, never the results
        error = f"{type(exc).__name__}: {_short(exc)}"
        log.warning("MLflow tracking at %s failed (%s); kept in %s", uri, error, run_dir / PENDING)
        partial = started[0] if started else record.get("partial_run_id")
        kept = {**record, "tracking_uri": uri, "error": error, "partial_run_id": partial}
        (run_dir / PENDING).write_text(json.dumps(kept, indent=2))
        return None
    (run_dir / PENDING).unlink(missing_ok=True)
    _drop_partial(record.get("partial_run_id"), uri)
    return run_id


def pending(run_dir: Path) -> dict[str, Any] | None:
    """The record a failed tracking left in ``run_dir``, if any."""
    try:
        found: dict[str, Any] = json.loads((run_dir / PENDING).read_text())
    except FileNotFoundError:
        return None
    return found


def _log(record: dict[str, Any], run_dir: Path, uri: str, started: list[str]) -> str:
    for name, value in (
        ("MLFLOW_DISABLE_TELEMETRY", "true"),
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(TRACKING_RETRIES)),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", str(TRACKING_TIMEOUT_S)),
    ):
        os.environ.setdefault(name, value)
    mlflow = require("mlflow", "eval")
    entities = require("mlflow.entities", "eval")
    data_dir = Path(record["data_dir"])
    data_dir.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = _experiment(client, record["experiment"], uri, data_dir)
    created = client.create_run(experiment_id, run_name=record["run_name"], tags=record["tags"])
    run_id: str = created.info.run_id
    started.append(run_id)
    params = [entities.Param(k, v) for k, v in record["params"].items()]
    metrics = [entities.Metric(k, v, 0, 0) for k, v in record["metrics"].items()]
    for start in range(0, max(len(metrics), len(params)), 100):  # log_batch takes 100 params
        client.log_batch(
            run_id, metrics=metrics[start : start + 100], params=params[start : start + 100]
        )
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and path.name != PENDING:
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _drop_partial(run_id: str | None, uri: str) -> None:
    """A run a failed upload left half-logged is deleted once a full one is in (best effort)."""
    if not run_id:
        return
    try:
        require("mlflow", "eval").MlflowClient(tracking_uri=uri).delete_run(run_id)
    except Exception as exc:
        log.warning("could not delete the half-logged MLflow run %s: %s", run_id, _short(exc))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _experiment(client: Any, name: str, uri: str, data_dir: Path) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_root(uri, data_dir)))


def artifact_root(uri: str, folder: Path) -> str | None:
    """Where a new experiment on the tracking store ``uri`` keeps its artifacts: under
    ``folder``/mlartifacts for a database (SQLite, PostgreSQL) or a folder store, where
    MLflow's default would be ./mlruns wherever the command runs; None (the server's own
    store) for a tracking server."""
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    return (folder / "mlartifacts").resolve().as_uri()


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
