"""The request log: one row per query, written in batches by a background thread so the
request path only puts an event on a queue. Retention by age and by row count; the question
and the answer can each be kept, hashed (SHA-256) or left out, and each row says which
(``question_mode``, ``answer_mode``); export to CSV or Parquet.

The rows live in a ``RequestStore``: a SQLite file in the data dir (``SqliteRequestStore``,
here), or a PostgreSQL table that several replicas share (``monitoring.request_log.url``,
``llmops.monitoring.request_log_postgres``); ``RequestLog`` behaves the same over either."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from llmops.config.monitoring import RequestLogConfig
from llmops.db import (
    RETRYABLE,
    QueuedWriter,
    add_missing_columns,
    named_faults,
    open_database,
    transaction,
)
from llmops.deps import require
from llmops.monitoring.events import QueryEvent
from llmops.monitoring.request_log_postgres import PostgresRequestStore
from llmops.monitoring.request_store import (
    ADDED_COLUMNS,
    COLUMNS,
    EXPORTED,
    RequestStore,
    Row,
    decoded,
    event_row,
)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, time REAL NOT NULL, pipeline TEXT, variant TEXT, backend TEXT,
    question TEXT, query_chars INTEGER, retrieved_ids TEXT, scores TEXT, top_score REAL,
    sources_above INTEGER, answer_chars INTEGER, abstained INTEGER, latency_ms REAL,
    prompt_tokens INTEGER, completion_tokens INTEGER, feedback REAL, feedback_comment TEXT,
    correlation_id TEXT, answer TEXT, question_mode TEXT, answer_mode TEXT, trace_id TEXT
);
CREATE INDEX IF NOT EXISTS requests_time ON requests(time);
"""
# the server's own ids key the rows: a row, once written, is never replaced
_INSERT = (
    f"INSERT OR IGNORE INTO requests ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(COLUMNS))})"
)
BATCH = 500
FLUSH_EVERY_S = 1.0
LATE_ROW_S = 2 * FLUSH_EVERY_S  # another process's writer has had its turn by then
LATE_ROW_POLL_S = 0.25
PRUNE_EVERY_S = 60.0
BUSY_TIMEOUT_S = 30.0  # each write waits this long for another process's lock, then retries


def request_store(config: RequestLogConfig, data_dir: Path) -> RequestStore:
    """The store ``config`` names: PostgreSQL at ``url``, else a SQLite file (``path``,
    relative to ``data_dir``; default requests.sqlite)."""
    if config.url:
        return PostgresRequestStore(config.url)
    return SqliteRequestStore(data_dir / (config.path or "requests.sqlite"))


class RequestLog:
    """Append-only log of queries; ``record`` never touches the store itself. ``store``: a
    ``RequestStore``, or the path of a SQLite file."""

    def __init__(
        self,
        store: RequestStore | Path,
        config: RequestLogConfig,
        source_threshold: float = 0.5,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.store = SqliteRequestStore(store) if isinstance(store, Path) else store
        self.config = config
        self.source_threshold = source_threshold
        self._writer = QueuedWriter(
            "request-log", self._write, FLUSH_EVERY_S, BATCH, on_drop=on_drop
        )
        self._last_prune = 0.0
        self._started = False

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self.store.open()
        self._writer.start()
        self._started = True

    def close(self) -> None:
        if not self._started:
            return
        self._writer.close()
        self.store.close()
        self._started = False

    def flush(self) -> None:
        """Wait until every recorded event is stored (or kept after a failed write)."""
        self._writer.flush()

    # writing ---------------------------------------------------------------------------------
    def record(self, event: QueryEvent) -> None:
        self._writer.put(event)

    def set_feedback(
        self, request_id: str, score: float, comment: str | None = None, others_write: bool = False
    ) -> bool:
        """Attach a feedback score (1 / 0 for thumbs, or any number) and an optional comment to
        a logged request; False when no logged request has that id. The store unusable (locked
        past the wait, disk full, server down): ``StorageError``.

        The row may not be there yet when another process answered (another worker or replica
        writes its rows once a second): where others write to the store (``others_write``, or
        a shared store), a missing row is looked for again until that writer has had its turn."""
        self._require_started()
        self.flush()
        wait_s = LATE_ROW_S if others_write or self.store.shared else 0.0
        deadline = time.monotonic() + wait_s
        while not self.store.set_feedback(request_id, score, comment):
            if time.monotonic() >= deadline:
                return False
            time.sleep(LATE_ROW_POLL_S)
        return True

    @property
    def pending(self) -> int:
        """Rows kept in memory after a failed write (the file locked or its disk full, the
        server down), written on the writer's next round."""
        return self._writer.pending

    @property
    def dropped(self) -> int:
        """Rows given up on: more than the writer keeps, or still unwritten at ``close``."""
        return self._writer.dropped

    def _write(self, events: list[QueryEvent]) -> None:
        """One batch, all or nothing; a storage error propagates so the writer keeps the batch
        for its next round (a busy file, a full disk or a server down must not lose or fail
        requests)."""
        self.store.insert([event_row(e, self.config, self.source_threshold) for e in events])
        if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
            try:
                self.prune()
            except RETRYABLE as exc:  # the rows are in; pruning waits for the next round
                log.warning("request log %s: retention not applied: %s", self.store.where, exc)

    def prune(self) -> int:
        """Apply ``retention_days`` and ``max_rows``; returns the rows deleted."""
        self._require_started()
        self._last_prune = time.monotonic()
        days = self.config.retention_days
        cutoff = None if days is None else time.time() - days * 86400
        return self.store.prune(cutoff, self.config.max_rows)

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("the request log is not started")

    # reading ---------------------------------------------------------------------------------

    def rows(self, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Logged requests with ``since <= time < until`` (epoch seconds), oldest first."""
        return list(self.iter_rows(since, until))

    def iter_rows(
        self, since: float | None = None, until: float | None = None
    ) -> Iterator[dict[str, Any]]:
        self.flush()
        bounds = (since if since is not None else 0.0, until if until is not None else 1e18)
        for row in self.store.select(*bounds):
            yield decoded(row)

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


class SqliteRequestStore:
    """The rows in one SQLite file (WAL): worker processes on one machine share it, each write
    waiting up to ``BUSY_TIMEOUT_S`` for another's lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self.shared = False  # but by the worker processes of one machine
        self._db: sqlite3.Connection | None = None  # shared by the writer and feedback
        self._lock = threading.Lock()

    def open(self) -> None:
        if self._db is not None:
            return
        # WAL without an fsync per commit: durable enough for a log
        self._db = open_database(self.path, SCHEMA, synced=False, busy_timeout_s=BUSY_TIMEOUT_S)
        add_missing_columns(self._db, "requests", ADDED_COLUMNS)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def insert(self, rows: Sequence[Row]) -> None:
        with self._lock, transaction(self._database()) as db:
            db.executemany(_INSERT, rows)

    def set_feedback(self, request_id: str, score: float, comment: str | None) -> bool:
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

    def prune(self, cutoff: float | None, max_rows: int | None) -> int:
        deleted = 0
        with self._lock, transaction(self._database()) as db:
            if cutoff is not None:
                deleted += db.execute("DELETE FROM requests WHERE time < ?", (cutoff,)).rowcount
            if max_rows is not None:
                deleted += db.execute(
                    "DELETE FROM requests WHERE request_id IN (SELECT request_id FROM "
                    "requests ORDER BY time DESC LIMIT -1 OFFSET ?)",
                    (max_rows,),
                ).rowcount
        return deleted

    def select(self, since: float, until: float) -> Iterator[Mapping[str, Any]]:
        if not self.path.exists():
            return
        query = "SELECT * FROM requests WHERE time >= ? AND time < ? ORDER BY time"
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.row_factory = sqlite3.Row
            for row in db.execute(query, (since, until)):
                yield dict(row)

    def _database(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"the request log {self.path} is not open")
        return self._db
