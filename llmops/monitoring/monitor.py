"""``Monitor``: the metrics, the request log and the drift checker of one app behind the
few calls the service makes (``observe``, ``error``, ``ingestion``)."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmops.config.monitoring import DriftReference, MonitoringConfig
from llmops.deps import available
from llmops.errors import DatasetError
from llmops.monitoring.context import tag_request
from llmops.monitoring.drift import DriftResult, Window
from llmops.monitoring.drift_history import HISTORY_FILE, DriftHistory
from llmops.monitoring.drift_monitor import DriftMonitor, EmbedFn, reference_window
from llmops.monitoring.events import SIGNALS, QueryEvent
from llmops.monitoring.metrics import Metrics
from llmops.monitoring.request_log import RequestLog, request_store

log = logging.getLogger(__name__)
QUESTION_FIELDS = ("question", "query", "text")


class Monitor:
    def __init__(
        self,
        config: MonitoringConfig,
        pipeline: str,
        data_dir: Path,
        base_dir: Path | None = None,
        embed: EmbedFn | None = None,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.base_dir = base_dir or Path.cwd()
        self.metrics = _metrics(pipeline) if config.metrics else None
        threshold = config.drift.source_threshold
        log_config = config.request_log
        on_drop = None if self.metrics is None else self.metrics.rows_dropped("requests")
        self.request_log = (
            RequestLog(request_store(log_config, data_dir), log_config, threshold, on_drop)
            if log_config.enabled
            else None
        )
        drift, reference = config.drift, config.drift.reference
        self.drift = (
            DriftMonitor(
                drift,
                lambda: self.load_reference(reference),
                DriftHistory(data_dir / HISTORY_FILE, drift.keep_checks, drift.keep_days),
                embed,
                self._drifted,
                pipeline,
            )
            if reference is not None
            else None
        )
        self.embed = embed

    def start(self) -> None:
        reference = self.config.drift.reference
        if reference is not None and reference.dataset is not None:
            read_questions(self._dataset_path(reference.dataset))  # fail at start, not later
        for part in (self.request_log, self.drift):
            if part is not None:
                part.start()

    def close(self) -> None:
        for part in (self.drift, self.request_log):
            if part is not None:
                part.close()

    # hooks -----------------------------------------------------------------------------------
    def observe(self, event: QueryEvent) -> None:
        tag_request(backend=event.backend, variant=event.variant)
        if self.metrics is not None:
            self.metrics.query(event)
        if self.request_log is not None:
            self.request_log.record(event)
        if self.drift is not None and event.retrieved:  # chat-only calls would skew the window
            self.drift.observe(event)

    def error(self, exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.error(type(exc).__name__)

    def failed_over(self, failures: Sequence[str]) -> None:
        """Backends that failed before a fallback answered: counted as ``BackendError``."""
        if self.metrics is not None:
            for _ in failures:
                self.metrics.error("BackendError")

    def ingestion(
        self, counts: Mapping[str, int], chunks_total: int | None, ok: bool = True
    ) -> None:
        if self.metrics is not None:
            self.metrics.ingestion(counts, chunks_total, ok)

    def index_size(self, chunks: int) -> None:
        if self.metrics is not None:
            self.metrics.index_size(chunks)

    def canary(self, experiment: str, variant: str, share: float, move: str | None) -> None:
        """The canary's traffic share now; ``move`` when the ramp just moved."""
        if self.metrics is not None:
            self.metrics.canary(experiment, variant, share, move)

    def shadow_run(
        self, experiment: str, variant: str, outcome: str, agreement: float | None
    ) -> None:
        if self.metrics is not None:
            self.metrics.shadow_run(experiment, variant, outcome, agreement)

    def _drifted(self, result: DriftResult) -> None:
        if self.metrics is not None:
            scores = {name: s.scores(name) for name, s in result.signals.items()}
            detected = {name: s.detected for name, s in result.signals.items()}
            self.metrics.drift(scores, {**detected, "any": result.detected})

    # reference -------------------------------------------------------------------------------
    def _dataset_path(self, dataset: str) -> Path:
        path = Path(dataset)
        return path if path.is_absolute() else self.base_dir / path

    def load_reference(self, reference: DriftReference) -> Window:
        if reference.dataset is not None:
            questions = read_questions(self._dataset_path(reference.dataset))
            return reference_window(questions, None, self.embed)
        if self.request_log is None:
            raise ValueError("a drift reference period needs the request log (enabled: true)")
        since = reference.since.timestamp() if reference.since else None
        until = reference.until.timestamp() if reference.until else None
        return log_window(self.request_log.rows(since, until), self.embed)


def log_window(rows: Sequence[Mapping[str, Any]], embed: EmbedFn | None) -> Window:
    """A window from request-log rows; embeddings only when the questions were kept."""
    signals = {n: [float(r[n]) for r in rows] for n in SIGNALS}
    questions = [r["question"] for r in rows]
    kept = bool(rows) and all(
        isinstance(r["question"], str) and len(r["question"]) == r["query_chars"] for r in rows
    )
    return reference_window(questions if kept else [], signals, embed if kept else None)


def read_questions(path: Path) -> list[str]:
    """Questions from a JSONL or CSV file: the first of 'question', 'query', 'text'."""
    if not path.is_file():
        raise DatasetError(
            f"drift reference dataset {path} does not exist: fix monitoring.drift.reference"
            ".dataset (relative paths start at the config file's folder)"
        )
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            records: list[dict[str, Any]] = list(csv.DictReader(f))
    else:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    questions = [_question(r) for r in records]
    found = [q for q in questions if q]
    if not found:
        raise DatasetError(f"{path}: no record has a {' / '.join(QUESTION_FIELDS)} field")
    return found


def _question(record: Mapping[str, Any]) -> str | None:
    for name in QUESTION_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _metrics(pipeline: str) -> Metrics | None:
    if not available("prometheus_client"):
        log.warning("metrics are off: pip install 'llmops[monitor]' for prometheus-client")
        return None
    return Metrics(pipeline)
