"""The request log: one SQLite row per query, written in batches by a background thread so
the request path only puts an event on a queue. Retention by age and by row count; the
question and the answer can each be kept, hashed (SHA-256) or left out, and each row says
which (``question_mode``, ``answer_mode``); export to CSV or Parquet."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llmops.config.monitoring import QuestionMode, RequestLogConfig
from llmops.db import (
    QueuedWriter,
    add_missing_columns,
    named_faults,
    open_database,
    transaction,
)
from llmops.deps import require
from llmops.monitoring.events import QueryEvent

log = logging.getLogger(__name__)

COLUMNS = (
    "request_id", "time", "pipeline", "variant", "backend", "question", "query_chars",
    "retrieved_ids", "scores", "top_score", "sources_above", "answer_chars", "abstained",
    "latency_ms", "prompt_tokens", "completion_tokens", "feedback", "correlation_id",
    "answer", "question_mode", "answer_mode",
)  # fmt: skip
EXPORTED = (*COLUMNS, "feedback_comment")
SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, time REAL NOT NULL, pipeline TEXT, variant TEXT, backend TEXT,
    question TEXT, query_chars INTEGER, retrieved_ids TEXT, scores TEXT, top_score REAL,
    sources_above INTEGER, answer_chars INTEGER, abstained INTEGER, latency_ms REAL,
    prompt_tokens INTEGER, completion_tokens INTEGER, feedback REAL, feedback_comment TEXT,
    correlation_id TEXT, answer TEXT, question_mode TEXT, answer_mode TEXT
);
CREATE INDEX IF NOT EXISTS requests_time ON requests(time);
"""
# the server's own ids key the rows: a row, once written, is never replaced
_INSERT = (
    f"INSERT OR IGNORE INTO requests ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(COLUMNS))})"
)
# columns newer than the first schema, added to older databases when they are opened; rows
# written before have NULL there (a NULL mode: written before modes were recorded)
_ADDED_COLUMNS = {c: "TEXT" for c in ("correlation_id", "answer", "question_mode", "answer_mode")}
BATCH = 500
FLUSH_EVERY_S = 1.0
PRUNE_EVERY_S = 60.0
BUSY_TIMEOUT_S = 30.0  # each write waits this long for another process's lock, then retries


def stored_question(question: str, mode: QuestionMode) -> str | None:
    if mode == "keep":
        return question
    if mode == "hash":
        return hashlib.sha256(question.encode()).hexdigest()
    return None


class RequestLog:
    """Append-only log of queries in SQLite; ``record`` never touches the disk itself."""

    def __init__(
        self,
        path: Path,
        config: RequestLogConfig,
        source_threshold: float = 0.5,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.source_threshold = source_threshold
        self._writer = QueuedWriter(
            "request-log", self._write, FLUSH_EVERY_S, BATCH, on_drop=on_drop
        )
        self._last_prune = 0.0
        self._db: sqlite3.Connection | None = None  # shared by the writer and feedback
        self._lock = threading.Lock()

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._db is not None:
            return
        # WAL without an fsync per commit: durable enough for a log
        # worker processes share the file: a writer waits for another's lock
        self._db = open_database(self.path, SCHEMA, synced=False, busy_timeout_s=BUSY_TIMEOUT_S)
        add_missing_columns(self._db, "requests", _ADDED_COLUMNS)
        self._writer.start()

    def close(self) -> None:
        if self._db is None:
            return
        self._writer.close()
        with self._lock:
            self._database().close()
            self._db = None

    def flush(self) -> None:
        """Wait until every recorded event is in the database."""
        self._writer.flush()

    # writing ---------------------------------------------------------------------------------
    def record(self, event: QueryEvent) -> None:
        self._writer.put(event)

    def set_feedback(self, request_id: str, score: float, comment: str | None = None) -> bool:
        """Attach a feedback score (1 / 0 for thumbs, or any number) and an optional comment to
        a logged request."""
        self.flush()
        with (
            named_faults(self.path, BUSY_TIMEOUT_S),
            self._lock,
            transaction(self._database()) as db,
        ):
            cursor = db.execute(
                "UPDATE requests SET feedback = ?, feedback_comment = ? WHERE request_id = ?",
                (score, comment, request_id),
            )
            return cursor.rowcount > 0

    def _row(self, event: QueryEvent) -> tuple[Any, ...]:
        signals = event.signals(self.source_threshold)
        question_mode, answer_mode = self.config.question, self.config.answer_mode
        return (
            event.request_id, event.time, event.pipeline, event.variant, event.backend,
            stored_question(event.question, question_mode), len(event.question),
            json.dumps(event.retrieved_ids), json.dumps(event.scores), signals["top_score"],
            int(signals["sources_above"]), event.answer_chars, int(event.abstained),
            event.latency_ms, event.prompt_tokens, event.completion_tokens, None,
            event.correlation_id, stored_question(event.answer, answer_mode), question_mode,
            answer_mode,
        )  # fmt: skip

    @property
    def pending(self) -> int:
        """Rows kept in memory after a failed write (the file locked or its disk full), written
        on the writer's next round."""
        return self._writer.pending

    @property
    def dropped(self) -> int:
        """Rows given up on: more than the writer keeps, or still unwritten at ``close``."""
        return self._writer.dropped

    def _write(self, events: list[QueryEvent]) -> None:
        """One batch in one transaction; a storage error propagates so the writer keeps the
        batch for its next round (a busy file or a full disk must not lose or fail requests)."""
        rows = [self._row(e) for e in events]
        with self._lock, transaction(self._database()) as db:
            db.executemany(_INSERT, rows)
        if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
            try:
                self.prune()
            except sqlite3.Error as exc:  # the rows are in; pruning waits for the next round
                log.warning("request log %s: retention not applied: %s", self.path, exc)

    def prune(self) -> int:
        """Apply ``retention_days`` and ``max_rows``; returns the rows deleted."""
        self._last_prune = time.monotonic()
        deleted = 0
        with self._lock, transaction(self._database()) as db:
            if self.config.retention_days is not None:
                cutoff = time.time() - self.config.retention_days * 86400
                deleted += db.execute("DELETE FROM requests WHERE time < ?", (cutoff,)).rowcount
            if self.config.max_rows is not None:
                deleted += db.execute(
                    "DELETE FROM requests WHERE request_id IN (SELECT request_id FROM "
                    "requests ORDER BY time DESC LIMIT -1 OFFSET ?)",
                    (self.config.max_rows,),
                ).rowcount
        return deleted

    def _database(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the request log is not started")
        return self._db

    # reading ---------------------------------------------------------------------------------

    def rows(self, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Logged requests with ``since <= time < until`` (epoch seconds), oldest first."""
        return list(self.iter_rows(since, until))

    def iter_rows(
        self, since: float | None = None, until: float | None = None
    ) -> Iterator[dict[str, Any]]:
        self.flush()
        if not self.path.exists():
            return
        query = "SELECT * FROM requests WHERE time >= ? AND time < ? ORDER BY time"
        bounds = (since if since is not None else 0.0, until if until is not None else 1e18)
        # a connection of its own: a long export streams rows without holding up the writer
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.row_factory = sqlite3.Row
            for row in db.execute(query, bounds):
                # a database of an older version not opened for writing since lacks new columns
                item = dict.fromkeys(EXPORTED) | dict(row)
                item["retrieved_ids"] = json.loads(item["retrieved_ids"] or "[]")
                item["scores"] = json.loads(item["scores"] or "[]")
                item["abstained"] = bool(item["abstained"])
                yield item

    def export(self, out: Path, since: float | None = None, until: float | None = None) -> int:
        """Write the rows to ``out`` (.csv or .parquet); returns how many."""
        rows = self.rows(since, until)
        if out.suffix == ".parquet":
            pa = require("pyarrow", extra="monitor")
            parquet = require("pyarrow.parquet", extra="monitor")
            columns = {c: [r[c] for r in rows] for c in EXPORTED}
            parquet.write_table(pa.table(columns), out)
        elif out.suffix == ".csv":
            with out.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=EXPORTED)
                writer.writeheader()
                for row in rows:
                    writer.writerow({**row, **_json_lists(row)})
        else:
            raise ValueError(f"cannot export to '{out.name}': use a .csv or .parquet file")
        return len(rows)


def _json_lists(row: dict[str, Any]) -> dict[str, str]:
    return {"retrieved_ids": json.dumps(row["retrieved_ids"]), "scores": json.dumps(row["scores"])}
