"""Prometheus metrics of one app, on a private registry (several apps per process are fine).

With ``PROMETHEUS_MULTIPROC_DIR`` set before the first import of prometheus_client (what
``llmops up`` does for several workers), every process writes its samples to files in that
folder and ``render`` aggregates all of them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from llmops.deps import require
from llmops.monitoring.events import QueryEvent

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
HTTP = ("route", "method", "pipeline", "variant", "backend")
QUERY = ("pipeline", "variant", "backend")
EXPERIMENT = ("pipeline", "experiment", "variant")
AGREEMENT_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def multiprocess_dir() -> str | None:
    """The folder this process writes its samples to when prometheus_client runs in
    multiprocess mode, else None. The mode is chosen when prometheus_client is first imported;
    the variable set later (``import feast`` does, by any library that imports it) changes
    nothing here."""
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def prepare_multiprocess_dir(path: Path) -> None:
    """For a server with several worker processes: call in the parent before any worker
    starts (and before anything imports prometheus_client). Empties ``path`` (samples of an
    earlier run would be added to this one's) and sets ``PROMETHEUS_MULTIPROC_DIR``."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


class PrometheusMetrics:
    """A private registry whose metric children are cached per label set (the hot path is one
    dict lookup and an ``inc``/``observe`` per metric), rendered for ``GET /metrics``."""

    def __init__(self) -> None:
        self._prom = require("prometheus_client", extra="monitor")
        self.registry = self._prom.CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._multiprocess_dir = multiprocess_dir()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type; all processes' samples in multiprocess
        mode."""
        prom = self._prom
        registry = self.registry
        if self._multiprocess_dir:
            multiprocess = require("prometheus_client.multiprocess", extra="monitor")
            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self._multiprocess_dir)
        return prom.generate_latest(registry), str(prom.CONTENT_TYPE_LATEST)


class ExperimentMetrics(PrometheusMetrics):
    """What both kinds of app count: API-key refusals, canary ramps and shadow runs, whatever
    the variants are (RAG apps' or model versions'); ``pipeline`` is the app's (or the
    model's) name."""

    def __init__(self, pipeline: str) -> None:
        super().__init__()
        self.pipeline = pipeline
        prom = self._prom
        c, h, g, r = prom.Counter, prom.Histogram, prom.Gauge, self.registry
        self.access_refusals = c(
            "llmops_access_refusals",
            "API-key refusals by reason (missing_key, invalid_key, scope, rate, concurrency, "
            "tokens, store); mode shadow: over a limit but admitted (auth.shadow).",
            ["pipeline", "reason", "mode"],
            registry=r,
        )
        self.log_rows_dropped = c(
            "llmops_log_rows_dropped",
            "Rows a log could not keep (its writer's backlog full while its file was locked or "
            "the disk full, or still unwritten at shutdown), by log (requests, predictions).",
            ["pipeline", "log"],
            registry=r,
        )
        self.canary_share = g(
            "llmops_canary_share", "Traffic share of the canary (0 after a rollback).",
            EXPERIMENT, multiprocess_mode="mostrecent", registry=r,
        )  # fmt: skip
        self.canary_moves = c(
            "llmops_canary_moves", "Canary ramp moves (advanced, rolled_back_<cause>).",
            [*EXPERIMENT, "move"], registry=r,
        )  # fmt: skip
        self.shadow_runs = c(
            "llmops_shadow_runs", "Shadow runs by outcome (ok, error, skipped).",
            [*EXPERIMENT, "outcome"], registry=r,
        )  # fmt: skip
        self.shadow_agreement = h(
            "llmops_shadow_agreement", "Shadow and served agreeing (token F1; models: labels).",
            EXPERIMENT, buckets=AGREEMENT_BUCKETS, registry=r,
        )  # fmt: skip

    def access_refusal(self, reason: str, shadow: bool) -> None:
        mode = "shadow" if shadow else "enforced"
        self._child(self.access_refusals, self.pipeline, reason, mode).inc()

    def rows_dropped(self, log: str) -> Callable[[int], None]:
        """The ``on_drop`` of the log named ``log``: counts what it dropped."""
        child = self._child(self.log_rows_dropped, self.pipeline, log)
        return lambda count: child.inc(count)

    def canary(self, experiment: str, variant: str, share: float, move: str | None) -> None:
        key = (self.pipeline, experiment, variant)
        self._child(self.canary_share, *key).set(share)
        if move is not None:
            self._child(self.canary_moves, *key, move).inc()

    def shadow_run(
        self, experiment: str, variant: str, outcome: str, agreement: float | None
    ) -> None:
        key = (self.pipeline, experiment, variant)
        self._child(self.shadow_runs, *key, outcome).inc()
        if agreement is not None:
            self._child(self.shadow_agreement, *key).observe(agreement)


class Metrics(ExperimentMetrics):
    """The RAG app's counters, histograms and gauges."""

    def __init__(self, pipeline: str) -> None:
        super().__init__(pipeline)
        prom = self._prom
        c, h, g, r = prom.Counter, prom.Histogram, prom.Gauge, self.registry
        self.http_requests = c(
            "llmops_http_requests", "HTTP requests.", [*HTTP, "status"], registry=r
        )
        self.http_latency = h(
            "llmops_http_request_duration_seconds", "HTTP request latency.", HTTP,
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queries = c("llmops_queries", "Answered queries.", [*QUERY, "abstained"], registry=r)
        self.query_latency = h(
            "llmops_query_duration_seconds", "Query latency inside the pipeline.", QUERY,
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.stage_latency = h(
            "llmops_stage_duration_seconds", "Latency of each pipeline stage.",
            ["pipeline", "variant", "stage"], buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = c("llmops_tokens", "Tokens in and out.", [*QUERY, "direction"], registry=r)
        self.errors = c(
            "llmops_errors",
            "Failures by kind: failed queries, and backend failures a fallback "
            "answered for (BackendError).",
            ["pipeline", "kind"],
            registry=r,
        )
        self.index_chunks = g(
            "llmops_index_chunks", "Chunks in the active index.", ["pipeline"],
            multiprocess_mode="max", registry=r,
        )  # fmt: skip
        self.ingestions = c(
            "llmops_ingestions", "Ingestion runs.", ["pipeline", "status"], registry=r
        )
        self.ingested_files = c(
            "llmops_ingested_files", "Files seen by ingestion.", ["pipeline", "change"], registry=r
        )
        self.ingested_chunks = c(
            "llmops_ingested_chunks", "Chunks embedded by ingestion.", ["pipeline"], registry=r
        )
        self.drift_score = g(
            "llmops_drift_score", "Last drift statistic per signal.",
            ["pipeline", "signal", "statistic"], multiprocess_mode="mostrecent", registry=r,
        )  # fmt: skip
        self.drift_detected = g(
            "llmops_drift_detected", "1 while the last drift check found drift.",
            ["pipeline", "signal"], multiprocess_mode="mostrecent", registry=r,
        )  # fmt: skip
        self.drift_checks = c(
            "llmops_drift_checks", "Drift checks run.", ["pipeline", "result"], registry=r
        )

    # hooks -----------------------------------------------------------------------------------
    def http_request(
        self, route: str, method: str, status: int, seconds: float, labels: Mapping[str, str]
    ) -> None:
        key = (
            route,
            method,
            self.pipeline,
            labels.get("variant", "default"),
            labels.get("backend", "none"),
        )
        self._child(self.http_requests, *key, str(status)).inc()
        self._child(self.http_latency, *key).observe(seconds)

    def query(self, event: QueryEvent) -> None:
        key = (event.pipeline, event.variant, event.backend)
        self._child(self.queries, *key, "true" if event.abstained else "false").inc()
        self._child(self.query_latency, *key).observe(event.latency_ms / 1000)
        for stage, seconds in event.stages.items():
            self._child(self.stage_latency, event.pipeline, event.variant, stage).observe(seconds)
        if event.prompt_tokens:
            self._child(self.tokens, *key, "in").inc(event.prompt_tokens)
        if event.completion_tokens:
            self._child(self.tokens, *key, "out").inc(event.completion_tokens)

    def error(self, kind: str) -> None:
        self._child(self.errors, self.pipeline, kind).inc()

    def ingestion(
        self, counts: Mapping[str, int], chunks_total: int | None, ok: bool = True
    ) -> None:
        """Count one ingestion run; ``chunks_total`` (None after a failure) sets the index size."""
        self._child(self.ingestions, self.pipeline, "ok" if ok else "failed").inc()
        for change in ("added", "updated", "removed", "unchanged"):
            if counts.get(change):
                self._child(self.ingested_files, self.pipeline, change).inc(counts[change])
        if counts.get("chunks_embedded"):
            self._child(self.ingested_chunks, self.pipeline).inc(counts["chunks_embedded"])
        if chunks_total is not None:
            self.index_size(chunks_total)

    def index_size(self, chunks: int) -> None:
        self._child(self.index_chunks, self.pipeline).set(chunks)

    def drift(
        self, scores: Mapping[str, Mapping[str, float]], detected: Mapping[str, bool]
    ) -> None:
        """``scores``: signal → statistic name → value; ``detected``: signal → drifted."""
        for signal, stats in scores.items():
            for statistic, value in stats.items():
                self._child(self.drift_score, self.pipeline, signal, statistic).set(value)
        for signal, flag in detected.items():
            self._child(self.drift_detected, self.pipeline, signal).set(1.0 if flag else 0.0)
        result = "drift" if any(detected.values()) else "ok"
        self._child(self.drift_checks, self.pipeline, result).inc()
