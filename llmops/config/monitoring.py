"""The ``monitoring:`` section: Prometheus metrics, the request log, drift checks and tracing."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from llmops.config.component import Strict

QuestionMode = Literal["keep", "hash", "redact"]


class RequestLogConfig(Strict):
    """One row per query, written off the request path in batches: in a SQLite file in the
    data dir, or in PostgreSQL (``url``) so that several replicas keep one log."""

    enabled: bool = True
    path: str | None = Field(
        None, description="SQLite file; default: requests.sqlite in data_dir (relative: to it)."
    )
    url: str | None = Field(
        None,
        description="postgresql://user:${PASSWORD}@host:5432/db: rows and feedback in PostgreSQL "
        "(the table 'requests' is created if missing), shared by replicas; default: SQLite.",
    )
    retention_days: float | None = Field(30, gt=0, description="Drop rows older than this.")
    max_rows: int | None = Field(100_000, ge=1, description="Keep at most this many rows.")
    question: QuestionMode = Field(
        "keep",
        description="keep the question text, store only its SHA-256 (hash), or nothing (redact).",
    )
    answer: QuestionMode | None = Field(
        None,
        description="The same choice for the answer text; default: the question's mode.",
    )

    @property
    def answer_mode(self) -> QuestionMode:
        return self.question if self.answer is None else self.answer

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if not value:  # `url: ${REQUEST_LOG_URL:-}` left empty: the SQLite file
            return None
        scheme = urlsplit(value).scheme if "://" in value else ""
        if scheme not in ("postgresql", "postgres"):
            got = f"a {scheme}:// URL" if scheme else "no scheme"
            if scheme.startswith("postgresql+"):
                got += ", SQLAlchemy's form: drop the '+driver'"
            raise ValueError(
                "must be a PostgreSQL URL, postgresql://user:${PASSWORD}@host:5432/db (got "
                f"{got}); for a SQLite file set path instead"
            )
        return value

    @model_validator(mode="after")
    def _one_store(self) -> Self:
        if self.url and self.path:
            raise ValueError(
                "give path (a SQLite file) or url (PostgreSQL), not both: path is for SQLite only"
            )
        return self


class DriftReference(Strict):
    """What "normal" looks like: the questions of an eval dataset, or a period of the log."""

    dataset: str | None = Field(
        None, description="JSONL/CSV file with a 'question' (or 'query' / 'text') field."
    )
    since: datetime | None = Field(None, description="Start of a reference period in the log.")
    until: datetime | None = Field(None, description="End of that period (default: now).")

    @model_validator(mode="after")
    def _one_kind(self) -> DriftReference:
        if (self.dataset is None) == (self.since is None):
            raise ValueError(
                "give either 'dataset' (a file of questions) or 'since' (a period of the "
                "request log), not both and not neither"
            )
        return self


class DriftConfig(Strict):
    """Compare the last ``window`` queries with the reference every N requests or M minutes."""

    reference: DriftReference | None = Field(None, description="Drift checks are off without.")
    window: int = Field(200, ge=20, description="Queries in the current window.")
    every_requests: int | None = Field(50, ge=1)
    every_minutes: float | None = Field(10, gt=0)
    alpha: float = Field(
        0.01, gt=0, lt=1, description="False-alarm rate of one check (over all signals)."
    )
    permutations: int = Field(500, ge=50, le=10_000)
    source_threshold: float = Field(
        0.5, description="A source 'counts' when its score is at least this."
    )
    webhook_url: str | None = Field(None, description="POSTed a JSON alert when drift is found.")
    keep_checks: int = Field(
        5000,
        ge=1,
        le=1_000_000,
        description="Checks kept in drift.sqlite in data_dir for the console (across restarts).",
    )
    keep_days: float | None = Field(90, gt=0, description="Drop kept checks older than this.")


TracingExporter = Literal["otlp-http", "otlp-grpc", "none"]


class TracingConfig(Strict):
    """OpenTelemetry spans for every request, ingestion, eval run and prediction, exported
    over OTLP (docs/tracing.md). Off: no SDK is loaded and nothing is recorded."""

    enabled: bool = Field(False, description="Record spans (needs the tracing extra).")
    exporter: TracingExporter = Field(
        "otlp-http",
        description="otlp-http (protobuf over HTTP), otlp-grpc, or none (only the recent "
        "traces kept in memory for GET /traces).",
    )
    endpoint: str | None = Field(
        None,
        description="The collector: default http://localhost:4318/v1/traces (otlp-http) or "
        "http://localhost:4317 (otlp-grpc; an http:// endpoint is plaintext, https:// TLS).",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Sent with every export, e.g. {Authorization: 'Bearer ${OTLP_TOKEN}'}.",
    )
    sample_ratio: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of new traces recorded (a caller's sampled traceparent is followed).",
    )
    service_name: str | None = Field(None, description="service.name; default: the app name.")
    keep_recent: int = Field(
        100, ge=0, le=10_000, description="Recent traces kept in memory for GET /traces (0: none)."
    )
    timeout_s: float = Field(10, gt=0, description="Time limit of one export.")


class MonitoringConfig(Strict):
    metrics: bool = Field(True, description="Prometheus metrics at GET /metrics.")
    request_log: RequestLogConfig = Field(default_factory=lambda: RequestLogConfig())
    drift: DriftConfig = Field(default_factory=lambda: DriftConfig())
    tracing: TracingConfig = Field(default_factory=lambda: TracingConfig())
