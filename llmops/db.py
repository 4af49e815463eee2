"""SQLite helpers for every package that keeps state on disk (index records, the BM25 index,
routing state, logs, API keys): durable files shared by threads and processes, a bounded wait
for another process's lock, explicit transactions, one description of storage faults (disk
full, locked, corrupt), and a writer thread for logs that the request path only enqueues to
and that keeps what it could not write for the next try."""

from __future__ import annotations

import errno
import logging
import queue
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from llmops.errors import LLMOpsError, StorageError

Item = TypeVar("Item")
log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 10.0
"""How long any statement waits for another connection's (or process's) write lock before it
fails with "database is locked"."""
NEARLY_FULL_BYTES = 16 * 2**20
"""Free space under which a write failure whose own message is vague (Chroma's) is reported as
a full disk."""
FIX_FULL = (
    "free space on that disk (or give data_dir more room), then run again: work already done "
    "is kept"
)
FIX_CORRUPT = "move the file aside (it is created anew, empty) or restore it from a backup"
FIX_LOCKED = (
    "another process holds its lock (another llmops process on the same data_dir, or a sqlite3 "
    "shell; `fuser` on the file names it); retry when it is done"
)


def open_database(
    path: Path, schema: str, synced: bool = True, busy_timeout_s: float | None = None
) -> sqlite3.Connection:
    """A SQLite file for bookkeeping that must survive a crash: WAL, fully synced commits
    (``synced=False``: commits survive the process crashing but not the machine losing power,
    for cheap, high-rate counters), autocommit mode (callers open their own transactions),
    usable from any thread; each statement waits up to ``busy_timeout_s`` for another
    process's lock. A file that cannot be opened (full, locked, corrupt) raises
    ``StorageError`` naming it."""
    busy_timeout_s = BUSY_TIMEOUT_S if busy_timeout_s is None else busy_timeout_s
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
        )
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if synced else 'NORMAL'}")
        db.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise storage_error(exc, path, busy_timeout_s) from exc
    return db


def free_bytes(path: Path) -> int | None:
    """Free space on the filesystem holding ``path`` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def is_disk_full(exc: BaseException, path: Path) -> bool:
    """The error says the disk is full, or is vague and the disk is (nearly) full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    if "disk is full" in text or "no space left" in text:
        return True
    free = free_bytes(path)
    return free is not None and free < NEARLY_FULL_BYTES


def is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or "(code: 5)" in text


def is_corrupt(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(
        sign in text
        for sign in ("malformed", "not a database", "(code: 11)", "(code: 26)", "corrupt")
    )


def storage_error(
    exc: BaseException,
    path: Path,
    busy_timeout_s: float | None = None,
    fix_corrupt: str = FIX_CORRUPT,
) -> StorageError:
    """``exc`` (from SQLite, the OS or a store library) said in one line: what happened to
    ``path`` and how to recover."""
    if is_locked(exc):
        waited = BUSY_TIMEOUT_S if busy_timeout_s is None else busy_timeout_s
        return StorageError(str(path), f"locked for more than {waited:g} s", FIX_LOCKED)
    if is_corrupt(exc):
        return StorageError(str(path), f"corrupt ({exc})", fix_corrupt)
    if is_disk_full(exc, path):
        free = free_bytes(path)
        left = "" if free is None else f", {free // 1024} KiB free"
        return StorageError(str(path), f"disk full (no space left on device{left})", FIX_FULL)
    return StorageError(str(path), f"cannot be written ({type(exc).__name__}: {exc})")


def add_missing_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Bring a table written by an older version up to date: add each of ``columns`` (name →
    SQL type) it lacks."""
    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, sql_type in columns.items():
        if name not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")


@contextmanager
def named_faults(path: Path, busy_timeout_s: float | None = None) -> Iterator[None]:
    """Turn a SQLite error inside the block into a ``StorageError`` naming ``path`` (locked past
    the wait, disk full, corrupt), for callers that answer a request or end a command."""
    try:
        yield
    except sqlite3.Error as exc:
        raise storage_error(exc, path, busy_timeout_s) from exc


@contextmanager
def transaction(db: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """BEGIN ``mode`` (IMMEDIATE takes the write lock at once, DEFERRED reads), COMMIT on
    success, ROLLBACK on any exception."""
    db.execute(f"BEGIN {mode}")
    try:
        yield db
        db.execute("COMMIT")  # may fail too (disk full, busy): the connection must not stay in it
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


_STOP = object()
_FLUSH = object()
KEEP_ITEMS = 100_000
RETRYABLE = (sqlite3.Error, OSError, LLMOpsError)
"""What ``write`` raises when the disk is busy, full or gone: the items are kept and retried."""


class QueuedWriter(Generic[Item]):
    """Items put from any thread, written in batches by one background thread every
    ``every_s`` seconds (or at once on ``flush``): the hot path only enqueues. The thread sleeps
    in between instead of waking for each item, so it rarely takes the GIL from requests;
    ``write`` gets at most ``batch`` items per call.

    When ``write`` raises a storage error (another process holds the lock past the busy
    timeout, the disk is full), the items are kept in memory and written on the next round,
    oldest first; the first failure is logged as an error, the recovery as a warning. Beyond
    ``keep`` kept items the oldest are dropped: counted in ``dropped``, logged, and passed to
    ``on_drop`` (a metric). Any other exception is a bug: logged with its traceback, the
    batch dropped and counted the same way."""

    def __init__(
        self,
        name: str,
        write: Callable[[list[Item]], None],
        every_s: float = 1.0,
        batch: int = 500,
        keep: int = KEEP_ITEMS,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.name, self.write, self.every_s, self.batch = name, write, every_s, batch
        self.keep, self.on_drop = keep, on_drop
        self.dropped = 0
        self.failure: str | None = None  # the last write error, until a write succeeds again
        self._kept: list[Item] = []  # written by the writer thread only
        self._queue: queue.Queue[Any] = queue.Queue()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Items kept after a failed write, waiting for the next try."""
        return len(self._kept)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def put(self, item: Item) -> None:
        self._queue.put(item)

    def flush(self) -> None:
        """Try to write every item put so far (and every kept one); returns when written, or
        when the write failed and they are kept for the next round (see ``pending``)."""
        if self._thread is not None:
            self._queue.put(_FLUSH)
            self._wake.set()
            self._queue.join()

    def close(self) -> None:
        """Write what is queued (one last try for kept items), then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._wake.set()
            self._thread.join()
            self._thread = None
            if self._kept:
                self._drop(len(self._kept), "the writer is closing")
                self._kept = []

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
            items = [item for item in taken if item is not _STOP and item is not _FLUSH]
            self._kept = self._write_all(self._kept + items)
            for _ in taken:
                self._queue.task_done()
            if any(item is _STOP for item in taken):
                return

    def _write_all(self, items: list[Item]) -> list[Item]:
        """Write ``items`` in batches; returns those to keep for the next round."""
        for start in range(0, len(items), self.batch):
            part = items[start : start + self.batch]
            try:
                self.write(part)
            except RETRYABLE as exc:
                return self._keep_from(items[start:], exc)
            except Exception:
                log.exception("%s: dropped %d items that cannot be written", self.name, len(part))
                self._drop(len(part), "")
                continue
            if self.failure is not None:
                log.warning("%s: writing again after: %s", self.name, self.failure)
                self.failure = None
        return []

    def _keep_from(self, left: list[Item], exc: BaseException) -> list[Item]:
        if self.failure is None:
            log.error(
                "%s: could not write %d items (%s); keeping them to retry every %g s",
                self.name, len(left), exc, self.every_s,
            )  # fmt: skip
        self.failure = str(exc)
        if len(left) > self.keep:
            self._drop(len(left) - self.keep, f"more than {self.keep} kept")
            left = left[-self.keep :]
        return left

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        if why:
            log.error("%s: dropped %d items (%s): %s", self.name, count, why, self.failure)
        if self.on_drop is not None:
            self.on_drop(count)
