"""SQLite helpers for every package that keeps state on disk (index records, the BM25 index,
routing state): durable files shared by threads, explicit transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
