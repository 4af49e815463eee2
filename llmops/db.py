"""SQLite helpers for every package that keeps state on disk (index records, the BM25 index,
routing state, logs): durable files shared by threads, explicit transactions, and a writer
thread for logs that the request path only enqueues to."""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


def open_database(path: Path, schema: str, synced: bool = True) -> sqlite3.Connection:
    """A SQLite file for bookkeeping that must survive a crash: WAL, fully synced commits
    (``synced=False``: commits survive the process crashing but not the machine losing power,
    for cheap, high-rate counters), autocommit mode (callers open their own transactions),
    usable from any thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if synced else 'NORMAL'}")
    db.executescript(schema)
    return db


def add_missing_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Bring a table written by an older version up to date: add each of ``columns`` (name →
    SQL type) it lacks."""
    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, sql_type in columns.items():
        if name not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")


@contextmanager
def transaction(db: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """BEGIN ``mode`` (IMMEDIATE takes the write lock at once, DEFERRED reads), COMMIT on
    success, ROLLBACK on any exception."""
    db.execute(f"BEGIN {mode}")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_STOP = object()


class QueuedWriter(Generic[Item]):
    """Items put from any thread, written in batches by one background thread every
    ``every_s`` seconds (or at once on ``flush``): the hot path only enqueues. The thread sleeps
    in between instead of waking for each item, so it rarely takes the GIL from requests;
    ``write`` gets at most ``batch`` items per call and must not raise."""

    def __init__(
        self, name: str, write: Callable[[list[Item]], None], every_s: float = 1.0, batch: int = 500
    ) -> None:
        self.name, self.write, self.every_s, self.batch = name, write, every_s, batch
        self._queue: queue.Queue[Any] = queue.Queue()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def put(self, item: Item) -> None:
        self._queue.put(item)

    def flush(self) -> None:
        """Wait until every item put so far is written."""
        if self._thread is not None:
            self._wake.set()
            self._queue.join()

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._wake.set()
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.every_s)
            self._wake.clear()
            taken = []
            while True:
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            items = [item for item in taken if item is not _STOP]
            for start in range(0, len(items), self.batch):
                self.write(items[start : start + self.batch])
            for _ in taken:
                self._queue.task_done()
            if len(items) < len(taken):
                return
