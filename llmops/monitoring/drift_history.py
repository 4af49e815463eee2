"""Drift checks kept across restarts: one row per check (its time, whether it found drift and
raised an alert, the window sizes, and every signal's statistic, p-value, level and PSI) in
``drift.sqlite`` in the app's data dir, the newest ``keep_checks`` of the last ``keep_days``.
The console's drift page (``GET /drift``) reads them back.

A SQLite file beside the request log even where the log is in PostgreSQL: a check judges the
window of the process that made it, so each replica keeps its own checks, as it has its own
window; Prometheus, scraping each replica, has all of them (``llmops_drift_*``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from llmops.db import named_faults, open_database, transaction

HISTORY_FILE = "drift.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS drift_checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, detected INTEGER NOT NULL,
    alert INTEGER NOT NULL, result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS drift_checks_time ON drift_checks(time);
"""
BUSY_TIMEOUT_S = 10.0


class DriftHistory:
    """The checks of one app in a SQLite file (WAL: the worker processes of one machine may
    share it). ``add`` and ``recent`` raise ``StorageError`` when the file is locked past the
    wait, its disk is full or it is corrupt."""

    def __init__(self, path: Path, keep_checks: int, keep_days: float | None) -> None:
        self.path = path
        self.keep_checks, self.keep_days = keep_checks, keep_days
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        if self._db is None:
            self._db = open_database(self.path, SCHEMA, busy_timeout_s=BUSY_TIMEOUT_S)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def add(self, check: dict[str, Any]) -> None:
        """Keep one check (``time``, ``detected``, ``alert`` and the rest of the result), then
        drop what the retention no longer keeps."""
        row = (check["time"], int(check["detected"]), int(check["alert"]), json.dumps(check))
        with (
            named_faults(self.path, BUSY_TIMEOUT_S),
            self._lock,
            transaction(self._database()) as db,
        ):
            db.execute(
                "INSERT INTO drift_checks (time, detected, alert, result) VALUES (?, ?, ?, ?)", row
            )
            if self.keep_days is not None:
                cutoff = time.time() - self.keep_days * 86400
                db.execute("DELETE FROM drift_checks WHERE time < ?", (cutoff,))
            db.execute(
                "DELETE FROM drift_checks WHERE id IN (SELECT id FROM drift_checks "
                "ORDER BY time DESC, id DESC LIMIT -1 OFFSET ?)",
                (self.keep_checks,),
            )

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` checks kept, oldest first."""
        with named_faults(self.path, BUSY_TIMEOUT_S), self._lock:
            rows = self._database().execute(
                "SELECT result FROM drift_checks ORDER BY time DESC, id DESC LIMIT ?", (limit,)
            )
            return [json.loads(result) for (result,) in reversed(rows.fetchall())]

    def count(self) -> int:
        """How many checks are kept."""
        with named_faults(self.path, BUSY_TIMEOUT_S), self._lock:
            (count,) = self._database().execute("SELECT COUNT(*) FROM drift_checks").fetchone()
            return int(count)

    def _database(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"the drift history {self.path} is not open")
        return self._db
