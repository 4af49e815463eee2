"""Prometheus metrics of a served model app: predictions and their latency per variant and
version, labels joined, live metrics from those labels, drift per version and column, the
retraining loop's steps; canary and shadow metrics as for RAG apps."""

from __future__ import annotations

from collections.abc import Mapping

from llmops.monitoring.metrics import LATENCY_BUCKETS, ExperimentMetrics

MODEL = ("model", "variant", "version")


class ModelMetrics(ExperimentMetrics):
    def __init__(self, model: str) -> None:
        super().__init__(model)
        prom = self._prom
        c, h, g, r = prom.Counter, prom.Histogram, prom.Gauge, self.registry
        self.rows = c("llmops_model_predicted_rows", "Rows predicted.", MODEL, registry=r)
        self.requests = c(
            "llmops_model_requests", "Prediction requests by outcome (ok, invalid, error).",
            ["model", "variant", "outcome"], registry=r,
        )  # fmt: skip
        self.latency = h(
            "llmops_model_predict_duration_seconds", "Prediction latency inside the service.",
            ["model", "variant"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.labels = c(
            "llmops_model_labels", "True labels joined to logged predictions.",
            ["model", "version"], registry=r,
        )  # fmt: skip
        self.live = g(
            "llmops_model_live_metric", "Metric of the newest labelled predictions per version.",
            ["model", "version", "metric"], multiprocess_mode="mostrecent", registry=r,
        )  # fmt: skip
        self.drift_psi = g(
            "llmops_model_drift_psi", "PSI of each column's served rows against training.",
            ["model", "version", "column"], multiprocess_mode="mostrecent", registry=r,
        )  # fmt: skip
        self.drift_detected = g(
            "llmops_model_drift_detected", "1 while the last check found drift in the column.",
            ["model", "version", "column"], multiprocess_mode="mostrecent", registry=r,
        )  # fmt: skip
        self.retrain_steps = c(
            "llmops_model_retrain_steps", "Retraining loop steps (started, rejected, canary, "
            "promoted, rolled_back, failed).", ["model", "step"], registry=r,
        )  # fmt: skip

    def predicted(self, variant: str, version: int, rows: int, seconds: float) -> None:
        self._child(self.rows, self.pipeline, variant, str(version)).inc(rows)
        self._child(self.requests, self.pipeline, variant, "ok").inc()
        self._child(self.latency, self.pipeline, variant).observe(seconds)

    def failed(self, variant: str, outcome: str) -> None:
        self._child(self.requests, self.pipeline, variant, outcome).inc()

    def labelled(self, version: int, count: int) -> None:
        self._child(self.labels, self.pipeline, str(version)).inc(count)

    def live_metrics(self, version: int, values: Mapping[str, float]) -> None:
        for metric, value in values.items():
            self._child(self.live, self.pipeline, str(version), metric).set(value)

    def drift(self, version: int, psi: Mapping[str, float], detected: Mapping[str, bool]) -> None:
        for column, value in psi.items():
            self._child(self.drift_psi, self.pipeline, str(version), column).set(value)
        for column, flag in detected.items():
            flagged = 1.0 if flag else 0.0
            self._child(self.drift_detected, self.pipeline, str(version), column).set(flagged)

    def retrain_step(self, step: str) -> None:
        self._child(self.retrain_steps, self.pipeline, step).inc()
