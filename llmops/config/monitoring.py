"""The ``monitoring:`` section: Prometheus metrics, the request log and drift checks."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from llmops.config.component import Strict

QuestionMode = Literal["keep", "hash", "redact"]


class RequestLogConfig(Strict):
    """One row per query in SQLite, written off the request path in batches."""

    enabled: bool = True
    path: str | None = Field(
        None, description="SQLite file; default: requests.sqlite in data_dir (relative: to it)."
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


class MonitoringConfig(Strict):
    metrics: bool = Field(True, description="Prometheus metrics at GET /metrics.")
    request_log: RequestLogConfig = Field(default_factory=lambda: RequestLogConfig())
    drift: DriftConfig = Field(default_factory=lambda: DriftConfig())
