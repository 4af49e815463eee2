"""The prediction log of a model app: one SQLite row per predicted row — its features, the
prediction, the positive-class score, the variant and version that made it — written in batches
by a background thread, so ``/predict`` only enqueues. ``POST /labels`` joins true labels to it
by request id and row (days later is fine: rows live ``retention_days``), and the live metrics
read the newest labelled rows of a version back.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.db import QueuedWriter, named_faults, open_database, transaction

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT NOT NULL, row INTEGER NOT NULL, shadow INTEGER NOT NULL, time REAL NOT NULL,
    model TEXT NOT NULL, variant TEXT NOT NULL, version INTEGER NOT NULL, features TEXT NOT NULL,
    prediction TEXT NOT NULL, score REAL, truth TEXT, labelled_at REAL,
    PRIMARY KEY (request_id, row, shadow)
);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions(time);
CREATE INDEX IF NOT EXISTS predictions_labelled ON predictions(version, labelled_at);
"""
_INSERT = (
    "INSERT OR IGNORE INTO predictions (request_id, row, shadow, time, model, variant, version, "
    "features, prediction, score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
PRUNE_EVERY_S = 60.0
BUSY_TIMEOUT_S = 30.0  # each write waits this long for another process's lock, then retries


@dataclass(frozen=True)
class PredictedRequest:
    """What one ``/predict`` request was answered with, as the log keeps it."""

    request_id: str
    model: str
    variant: str
    version: int
    rows: Sequence[Mapping[str, Any]]
    predictions: Sequence[Any]  # one label (or value) per row
    scores: Sequence[float | None]  # the positive class's probability per row, if any
    time: float
    shadow: bool = False  # predicted in the shadow of the request, not answered


@dataclass(frozen=True)
class Label:
    request_id: str
    row: int
    truth: Any


@dataclass(frozen=True)
class Joined:
    """A label that found its prediction."""

    request_id: str
    row: int
    variant: str
    version: int
    prediction: Any
    truth: Any
    score: float | None
    shadow: bool


class PredictionLog:
    """Append-only SQLite log of predicted rows, labels joined later."""

    def __init__(
        self,
        path: Path,
        retention_days: float | None = 30.0,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.path = path
        self.retention_days = retention_days
        self._writer = QueuedWriter("prediction-log", self._write, on_drop=on_drop)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._last_prune = 0.0

    def start(self) -> None:
        if self._db is None:
            self._db = open_database(self.path, SCHEMA, synced=False, busy_timeout_s=BUSY_TIMEOUT_S)
            self._writer.start()

    def close(self) -> None:
        if self._db is not None:
            self._writer.close()
            with self._lock:
                self._db.close()
                self._db = None

    def record(self, request: PredictedRequest) -> None:
        self._writer.put(request)

    def flush(self) -> None:
        self._writer.flush()

    @property
    def pending(self) -> int:
        """Rows kept in memory after a failed write, written on the writer's next round."""
        return self._writer.pending

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    def label(self, labels: Sequence[Label]) -> tuple[list[Joined], list[Label]]:
        """Attach each true label to its logged row, and to the shadow's prediction of it (a
        second label for a row replaces the first); returns the predictions joined (served
        and shadow) and the labels that found no row (unknown request id or row, or older
        than the retention)."""
        self.flush()
        joined, unknown = [], []
        now = time.time()
        with (
            named_faults(self.path, BUSY_TIMEOUT_S),
            self._lock,
            transaction(self._database()) as db,
        ):
            for item in labels:
                found = db.execute(
                    "UPDATE predictions SET truth = ?, labelled_at = ? WHERE request_id = ? "
                    "AND row = ? RETURNING variant, version, prediction, score, shadow",
                    (json.dumps(item.truth), now, item.request_id, item.row),
                ).fetchall()
                if not found:
                    unknown.append(item)
                joined += [
                    Joined(item.request_id, item.row, variant, version, json.loads(prediction),
                           item.truth, score, bool(shadow))
                    for variant, version, prediction, score, shadow in found
                ]  # fmt: skip
        return joined, unknown

    def labelled(self, version: int, limit: int) -> list[tuple[Any, Any, float | None]]:
        """(prediction, truth, score) of the newest ``limit`` labelled rows of ``version``."""
        with self._lock:
            found = self._database().execute(
                "SELECT prediction, truth, score FROM predictions WHERE version = ? AND "
                "labelled_at IS NOT NULL ORDER BY labelled_at DESC LIMIT ?",
                (version, limit),
            )
            rows = found.fetchall()
        return [(json.loads(p), json.loads(t), s) for p, t, s in rows]

    def count(self) -> int:
        self.flush()
        with self._lock:
            return int(self._database().execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    def _write(self, requests: list[PredictedRequest]) -> None:
        """One batch in one transaction; a storage error propagates so the writer keeps the
        batch for its next round (a busy file or a full disk must not lose predictions)."""
        rows = [_row(r, i, *row) for r in requests for i, row in enumerate(_rows_of(r))]
        with self._lock, transaction(self._database()) as db:
            db.executemany(_INSERT, rows)
        if self.retention_days is not None and time.monotonic() - self._last_prune > (
            PRUNE_EVERY_S
        ):
            try:
                self._prune(self.retention_days)
            except sqlite3.Error as exc:  # the rows are in; pruning waits for the next round
                log.warning("prediction log %s: retention not applied: %s", self.path, exc)

    def _prune(self, days: float) -> None:
        self._last_prune = time.monotonic()
        with self._lock, transaction(self._database()) as db:
            db.execute("DELETE FROM predictions WHERE time < ?", (time.time() - days * 86400,))

    def _database(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the prediction log is not started")
        return self._db


def _rows_of(request: PredictedRequest) -> zip[tuple[Mapping[str, Any], Any, float | None]]:
    return zip(request.rows, request.predictions, request.scores, strict=True)


def _row(
    r: PredictedRequest, i: int, row: Mapping[str, Any], prediction: Any, score: float | None
) -> tuple[Any, ...]:
    features = json.dumps(dict(row), default=str)
    return (r.request_id, i, int(r.shadow), r.time, r.model, r.variant, r.version, features,
            json.dumps(prediction, default=str), score)  # fmt: skip
