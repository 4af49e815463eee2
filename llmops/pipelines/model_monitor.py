"""Monitoring of a served model app: every prediction into the prediction log, the Prometheus
metrics and the drift windows; labels joined to the log and turned into live metrics per
version; alerts (drift, failed performance gates) for the retraining loop.

Drift compares a version's served rows with rows it was trained on (a sample the training job
stores with the run; the app's training data for versions registered without one), each
predicted by the version itself, so prediction drift is checked beside feature drift.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.config import LoadedModelApp
from llmops.evaluation.gates import GateResult, check, parse_gate
from llmops.ml.data import load_splits
from llmops.ml.metrics import live_scores, positive_label
from llmops.ml.predict import Prediction, features_frame, one_openmp_thread, predict_rows
from llmops.monitoring.model_metrics import ModelMetrics
from llmops.monitoring.prediction_log import Joined, Label, PredictedRequest, PredictionLog
from llmops.monitoring.report import table_report
from llmops.monitoring.table_drift import TableDrift
from llmops.monitoring.table_monitor import TableDriftMonitor
from llmops.pipelines.served_versions import Served
from llmops.pipelines.train import app_data_dir, app_registry

log = logging.getLogger("llmops.monitoring")


@dataclass(frozen=True)
class Alert:
    """Something the retraining loop may act on."""

    kind: str  # "drift" or "performance"
    version: int
    reason: str


AlertFn = Callable[[Alert], None]


class ModelMonitor:
    def __init__(self, loaded: LoadedModelApp, metrics: ModelMetrics, on_alert: AlertFn) -> None:
        self.loaded, self.app, self.metrics, self.on_alert = loaded, loaded.app, metrics, on_alert
        settings = self.app.monitoring
        self.data_dir = app_data_dir(loaded)
        self.log = (
            PredictionLog(
                self.data_dir / "predictions.sqlite",
                settings.predictions.retention_days,
                metrics.rows_dropped("predictions"),
            )
            if settings.predictions.enabled
            else None
        )
        features = self.app.features
        self.drift = (
            TableDriftMonitor(
                settings.drift,
                numeric=features.numeric,
                categorical=[*features.categorical, *features.ordinal],
                on_result=self._drift_checked,
                numeric_prediction=self._numeric_prediction,
            )
            if settings.drift.enabled
            else None
        )
        self.production: int | None = None  # the version whose alerts count
        self._positive: dict[int, Any] = {}
        self._live: dict[int, dict[str, float]] = {}

    @property
    def _numeric_prediction(self) -> bool:
        """Drift reads predictions as numbers: regression values, or the positive class's
        score when ``positive_class`` is set; else class labels (chi-squared)."""
        return self.app.task == "regression" or self.app.positive_class is not None

    def start(self) -> None:
        if self.log is not None:
            self.log.start()
        if self.drift is not None:
            self.drift.start()

    def close(self) -> None:
        if self.drift is not None:
            self.drift.close()
        if self.log is not None:
            self.log.close()

    # versions --------------------------------------------------------------------------------
    def prepare(self, served: Served) -> None:
        """A version was loaded: remember its positive class and build its drift reference
        (runs off the event loop)."""
        number = served.version.version
        model = served.model
        if self.app.task == "classification" and len(getattr(model, "classes_", [])) == 2:
            self._positive[number] = positive_label(model, self.app.positive_class)
        if self.drift is None or self.drift.has_reference(number):
            return
        rows = self._reference_rows(served)
        if rows is None:
            log.warning("no drift reference for version %d: its drift is not checked", number)
            return
        frame = features_frame(rows.to_dict("records"), served.columns)
        with one_openmp_thread():  # a worker thread: see one_openmp_thread
            predictions = predict_rows(model, frame)
        rows = rows.assign(prediction=self._values(number, predictions))
        self.drift.set_reference(number, rows)

    def _reference_rows(self, served: Served) -> Any:
        """The rows the version stored as its reference, else a sample of the app's data."""
        limit = self.app.monitoring.drift.reference_rows
        stored = app_registry(self.loaded).reference(served.version)
        if stored is not None:
            return stored.head(limit)
        try:
            splits = load_splits(
                self.app.data, self.loaded.base_dir, self.app.target, self.app.task
            )
        except Exception as exc:  # no data here (a serving-only host): no drift checks
            log.warning("cannot read the training data for a drift reference: %s", exc)
            return None
        rows = splits.train.drop(columns=[self.app.target])
        return rows.sample(min(limit, len(rows)), random_state=0)

    def _values(self, version: int, predictions: Sequence[Prediction]) -> list[Any]:
        """What the drift check reads per prediction (see ``_numeric_prediction``)."""
        if self.app.task == "classification" and self.app.positive_class is not None:
            return [self._score(version, p) for p in predictions]
        return [p.label for p in predictions]

    def _score(self, version: int, prediction: Prediction) -> float | None:
        positive = self._positive.get(version)
        if positive is None or prediction.probabilities is None:
            return None
        return prediction.probabilities.get(str(positive))

    # requests --------------------------------------------------------------------------------
    def predicted(
        self,
        request_id: str,
        variant: str,
        served: Served,
        rows: Sequence[Mapping[str, Any]],
        predictions: Sequence[Prediction],
        seconds: float,
        shadow: bool = False,
    ) -> None:
        """Count, log and watch the rows ``served`` predicted (``shadow``: in the shadow of
        the request, which another version answered)."""
        number = served.version.version
        self.metrics.predicted(variant, number, len(rows), seconds)
        if self.log is not None:
            self.log.record(
                PredictedRequest(
                    request_id,
                    self.app.model_name,
                    variant,
                    number,
                    rows,
                    [p.label for p in predictions],
                    [self._score(number, p) for p in predictions],
                    time.time(),
                    shadow,
                )
            )
        if self.drift is not None:
            self.drift.observe(number, rows, self._values(number, predictions))

    def label(self, labels: Sequence[Label]) -> tuple[list[Joined], list[Label]]:
        """Join true labels to logged predictions; refresh the live metrics of the versions
        they touched and judge the production version's performance gates."""
        if self.log is None:
            raise RuntimeError("the prediction log is off (monitoring.predictions.enabled)")
        joined, unknown = self.log.label(labels)
        for version in sorted({j.version for j in joined}):
            self.metrics.labelled(version, sum(j.version == version for j in joined))
            self._refresh_live(version)
        return joined, unknown

    def _refresh_live(self, version: int) -> None:
        assert self.log is not None
        rows = self.log.labelled(version, self.app.monitoring.predictions.live_window)
        predicted, truth, scores = (list(column) for column in zip(*rows, strict=True))
        values = live_scores(predicted, truth, scores, self.app.task, self._positive.get(version))
        values["labelled"] = float(len(rows))
        self._live[version] = values
        self.metrics.live_metrics(version, values)
        if version == self.production:
            self._judge_performance(version, values)

    def _judge_performance(self, version: int, values: Mapping[str, float]) -> None:
        retrain = self.app.monitoring.retrain
        if retrain is None or not retrain.performance or values["labelled"] < retrain.min_labels:
            return
        gates = [parse_gate(g) for g in retrain.performance]
        failed = [result for result in check(gates, values) if not result.passed]
        if failed:
            self.on_alert(Alert("performance", version, _failed(failed, int(values["labelled"]))))

    # drift -----------------------------------------------------------------------------------
    def _drift_checked(self, version: int, result: TableDrift) -> None:
        """Runs on the drift thread after each judged check."""
        psi = {name: c.psi for name, c in result.columns.items()}
        detected = {name: c.detected for name, c in result.columns.items()}
        self.metrics.drift(version, psi, detected)
        if result.detected:
            log.warning("version %d: drift in %s", version, ", ".join(result.drifted))
            if version == self.production:
                reason = f"drift in {', '.join(result.drifted)} over {result.current_rows} rows"
                self.on_alert(Alert("drift", version, reason))

    def drift_report(self, version: int, out_dir: Path) -> tuple[Path, dict[str, Any]]:
        """Evidently's drift report of ``version``'s window against its reference, plus our
        own check's verdicts; returns the HTML's path and the summary."""
        if self.drift is None:
            raise LookupError("drift checks are off (monitoring.drift.enabled)")
        reference, current = self.drift.windows(version)
        if len(current) < 2:
            raise LookupError(f"version {version} has served {len(current)} rows; need 2")
        out_dir.mkdir(parents=True, exist_ok=True)
        html = out_dir / f"drift-v{version}.html"
        summary = table_report(reference, current, self.drift.numeric, self.drift.categorical, html)
        return html, {"ours": self.drift.check(version).to_dict(), "evidently": summary}

    # status ----------------------------------------------------------------------------------
    def status(self, version: int) -> dict[str, Any]:
        drift = self.drift.latest(version) if self.drift is not None else None
        return {
            "live": self._live.get(version, {}),
            "drift": None
            if drift is None
            else {
                "detected": drift.detected,
                "drifted": drift.drifted,
                "rows": drift.current_rows,
                "psi": {n: round(c.psi, 4) for n, c in drift.columns.items()},
            },
        }


def _failed(results: list[GateResult], labelled: int) -> str:
    return f"live metrics over {labelled} labelled rows fail " + "; ".join(
        r.describe() for r in results
    )
