"""SQLite persistence of the BM25 index: per collection, its vocabulary and every chunk with its
term ids and counts, so loading never re-tokenizes and hits come back as the indexed ``Chunk``.

Each write is one transaction with ``synchronous=FULL``: when ``upsert``/``delete`` return, the
change survives a crash (ingestion's pending-id recovery relies on it).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from llmops.db import open_database, transaction
from llmops.rag.sparse.postings import EncodedChunk
from llmops.types import Chunk

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS terms (
    collection TEXT NOT NULL,
    term TEXT NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (collection, term)
);
CREATE TABLE IF NOT EXISTS chunks (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    source TEXT NOT NULL,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    term_ids BLOB NOT NULL,
    tfs BLOB NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (collection, id)
);
"""
SQL_BATCH = 500  # ids per DELETE statement (SQLite's parameter limit is far above)


class SparseStorage:
    """The on-disk side of ``Bm25Index``; thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._version = 0

    def open(self) -> None:
        if self._db is None:
            db = open_database(self.path, SCHEMA)
            self._version = int(db.execute("PRAGMA data_version").fetchone()[0])
            self._db = db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextmanager
    def _tx(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """A transaction: IMMEDIATE (takes the write lock at once) or DEFERRED (reads)."""
        if self._db is None:
            raise RuntimeError("sparse index not started: call start() first")
        with self._lock, transaction(self._db, mode) as db:
            yield db

    def changed_elsewhere(self) -> bool:
        """True (once) after another connection, i.e. another process, committed a change."""
        with self._tx("DEFERRED") as db:
            version = int(db.execute("PRAGMA data_version").fetchone()[0])
        changed, self._version = version != self._version, version
        return changed

    def write(
        self, collection: str, new_terms: Mapping[str, int], encoded: Sequence[EncodedChunk]
    ) -> None:
        """Create the collection if needed, add its new terms and insert or replace chunks."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO collections VALUES (?)", (collection,))
            db.executemany(
                "INSERT INTO terms VALUES (?, ?, ?)",
                [(collection, term, tid) for term, tid in new_terms.items()],
            )
            db.executemany(
                "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_row(collection, e) for e in encoded],
            )

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        with self._tx() as db:
            for start in range(0, len(ids), SQL_BATCH):
                part = list(ids[start : start + SQL_BATCH])
                marks = ",".join("?" * len(part))
                db.execute(
                    f"DELETE FROM chunks WHERE collection = ? AND id IN ({marks})",
                    (collection, *part),
                )

    def drop(self, collection: str) -> None:
        with self._tx() as db:
            for table, column in (("chunks", "collection"), ("terms", "collection")):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (collection,))
            db.execute("DELETE FROM collections WHERE name = ?", (collection,))

    def collections(self) -> list[str]:
        with self._tx("DEFERRED") as db:
            return [str(r[0]) for r in db.execute("SELECT name FROM collections ORDER BY name")]

    def count(self, collection: str) -> int:
        with self._tx("DEFERRED") as db:
            row = db.execute("SELECT COUNT(*) FROM chunks WHERE collection = ?", (collection,))
            return int(row.fetchone()[0])

    def ids(self, collection: str) -> set[str]:
        with self._tx("DEFERRED") as db:
            rows = db.execute("SELECT id FROM chunks WHERE collection = ?", (collection,))
            return {str(r[0]) for r in rows}

    def load(self, collection: str) -> tuple[dict[str, int], list[EncodedChunk]]:
        """The collection's vocabulary and chunks, in insertion order."""
        with self._tx("DEFERRED") as db:
            vocab = {
                str(term): int(tid)
                for term, tid in db.execute(
                    "SELECT term, id FROM terms WHERE collection = ?", (collection,)
                )
            }
            rows = db.execute(
                "SELECT id, document_id, source, position, text, metadata, term_ids, tfs, length"
                " FROM chunks WHERE collection = ? ORDER BY rowid",
                (collection,),
            ).fetchall()
        return vocab, [_encoded(row) for row in rows]


def _row(collection: str, e: EncodedChunk) -> tuple[object, ...]:
    c = e.chunk
    return (
        collection,
        c.id,
        c.document_id,
        c.source,
        c.index,
        c.text,
        json.dumps(dict(c.metadata)),
        e.term_ids.astype("<i4").tobytes(),
        e.tfs.astype("<i4").tobytes(),
        e.length,
    )


def _encoded(row: tuple[object, ...]) -> EncodedChunk:
    chunk_id, document_id, source, position, text, metadata, term_ids, tfs, length = row
    chunk = Chunk(
        id=str(chunk_id),
        document_id=str(document_id),
        text=str(text),
        source=str(source),
        index=int(str(position)),
        metadata=json.loads(str(metadata)),
    )
    return EncodedChunk(
        chunk,
        np.frombuffer(bytes(term_ids), dtype="<i4").astype(np.int32),  # type: ignore[call-overload]
        np.frombuffer(bytes(tfs), dtype="<i4").astype(np.int32),  # type: ignore[call-overload]
        int(str(length)),
    )
