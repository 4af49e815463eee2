"""Incremental record keeping: which source file, with which content hash, produced which
chunk ids in which collection — and which collection queries read.

Crash safety: before chunks of a file are written to the vector store, their ids are recorded
as *pending*. A re-run after a crash deletes pending and old ids that the file no longer
produces, so a kill at any point converges to the index of a clean run.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmops.db import named_faults, open_database, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    collection TEXT NOT NULL,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunk_ids TEXT NOT NULL,
    pending_ids TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    PRIMARY KEY (collection, source)
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class FileRecord:
    source: str
    content_hash: str
    chunk_ids: tuple[str, ...]
    pending_ids: tuple[str, ...] = ()
    error: str | None = None

    @property
    def stale_ids(self) -> set[str]:
        """Every id this file may have left in the store."""
        return set(self.chunk_ids) | set(self.pending_ids)


@dataclass(frozen=True)
class IndexTarget:
    """A collection and the settings fingerprint its vectors were built with."""

    collection: str
    fingerprint: str


class RecordTable:
    """SQLite table of file records plus the active and in-progress collections."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        # the state rows as last read, and the database's data_version then (it changes when
        # another connection commits; this connection's own writes clear the cache)
        self._state: dict[str, str | None] = {}
        self._state_version: int | None = None

    def open(self) -> None:
        if self._db is None:
            self._db = open_database(self.path, SCHEMA)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; a full disk, a lock held past the busy timeout or a damaged file
        raises ``StorageError`` naming this file (the transaction is rolled back)."""
        if self._db is None:
            raise RuntimeError("record table not open")
        with named_faults(self.path), self._lock, transaction(self._db) as db:
            self._state.clear()
            yield db

    def _get_state(self, key: str) -> str | None:
        """A state row; every query asks for the active collection, so the rows are cached
        until another process commits (``PRAGMA data_version``): no transaction, no lock
        wait behind a running ingestion's writes."""
        if self._db is None:
            raise RuntimeError("record table not open")
        with named_faults(self.path), self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._state_version:
                self._state, self._state_version = {}, version
            if key not in self._state:
                row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
                self._state[key] = None if row is None else str(row[0])
            return self._state[key]

    def _target(self, key: str) -> IndexTarget | None:
        value = self._get_state(key)
        return None if value is None else IndexTarget(**json.loads(value))

    def active(self) -> IndexTarget | None:
        return self._target("active")

    def building(self) -> IndexTarget | None:
        return self._target("building")

    def set_building(self, target: IndexTarget | None) -> None:
        with self._tx() as db:
            if target is None:
                db.execute("DELETE FROM state WHERE key = 'building'")
            else:
                db.execute(
                    "INSERT OR REPLACE INTO state VALUES ('building', ?)",
                    (json.dumps(target.__dict__),),
                )

    def promote(self, target: IndexTarget) -> None:
        """Make ``target`` the collection queries read; it is no longer in progress."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO state VALUES ('active', ?)", (json.dumps(target.__dict__),)
            )
            db.execute("DELETE FROM state WHERE key = 'building'")

    def next_generation(self) -> int:
        with self._tx() as db:
            row = db.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()
            number = 1 if row is None else int(row[0]) + 1
            db.execute("INSERT OR REPLACE INTO state VALUES ('generation', ?)", (str(number),))
        return number

    def files(self, collection: str) -> dict[str, FileRecord]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT source, content_hash, chunk_ids, pending_ids, error FROM files"
                " WHERE collection = ?",
                (collection,),
            ).fetchall()
        return {
            r[0]: FileRecord(r[0], r[1], tuple(json.loads(r[2])), tuple(json.loads(r[3])), r[4])
            for r in rows
        }

    def mark_pending(self, collection: str, pending: dict[str, Iterable[str]]) -> None:
        """Record the ids about to be written for each source, before writing them."""
        with self._tx() as db:
            for source, ids in pending.items():
                db.execute(
                    "INSERT INTO files (collection, source, content_hash, chunk_ids, pending_ids)"
                    " VALUES (?, ?, '', '[]', ?) ON CONFLICT (collection, source)"
                    " DO UPDATE SET pending_ids = excluded.pending_ids",
                    (collection, source, json.dumps(sorted(set(ids)))),
                )

    def commit(self, collection: str, records: Iterable[FileRecord]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, '[]', ?)",
                [
                    (collection, r.source, r.content_hash, json.dumps(list(r.chunk_ids)), r.error)
                    for r in records
                ],
            )

    def remove(self, collection: str, sources: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany(
                "DELETE FROM files WHERE collection = ? AND source = ?",
                [(collection, s) for s in sources],
            )

    def forget_collection(self, collection: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE collection = ?", (collection,))

    def collections(self) -> set[str]:
        with self._tx() as db:
            rows = db.execute("SELECT DISTINCT collection FROM files").fetchall()
        return {str(r[0]) for r in rows}
