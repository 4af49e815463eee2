"""Storage faults of an embedded Chroma folder, said in one line each: another process's lock
on ``chroma.sqlite3`` (waited for, at most ``LOCK_WAIT_S``), a full disk, a damaged file.

Chroma's own SQLite connection waits without end while another process holds a lock that
blocks it (a ``BEGIN EXCLUSIVE`` in a sqlite3 shell, a stuck process). SQLite locks files with
POSIX record locks at fixed offsets, so ``LockProbe`` asks the kernel (``F_GETLK``, which takes
nothing) whether another process holds one that would block the next call, and polls until it
is gone or the wait is over. It never opens a SQLite connection of its own: closing one would
drop the locks that Chroma's connection in this process holds on the same file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import struct
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from llmops.db import is_corrupt, is_disk_full, is_locked, storage_error
from llmops.errors import StorageError

log = logging.getLogger(__name__)

LOCK_WAIT_S = 10.0
POLL_S = 0.05
FIX_REBUILD = "rebuild the index from the sources with `llmops ingest --full`"
FIX_CORRUPT = (
    "it is moved aside when the app starts and the next `llmops ingest` rebuilds the index "
    "from the sources"
)
# where SQLite's unix VFS takes its locks (sqlite3.c: PENDING_BYTE, RESERVED_BYTE, SHARED_FIRST)
PENDING_BYTE = 0x40000000
RESERVED_BYTE = PENDING_BYTE + 1
SHARED_FIRST, SHARED_SIZE = PENDING_BYTE + 2, 510
# Chroma's words for a damaged HNSW segment folder (1.5): its files failed to load or disagree
_DAMAGED = (
    "hnsw",
    "pickle",
    "error getting embedding",
    "error finding id",
    "error loading",
    "segment reader",
)


class LockProbe:
    """Waits until no other process holds a lock on ``path`` that would block a read (or, with
    ``write``, a write); raises ``StorageError`` naming the file and the process after
    ``wait_s``. Linux only (elsewhere it does not wait)."""

    def __init__(self, path: Path, wait_s: float | None = None) -> None:
        self.path, self.wait_s = path, LOCK_WAIT_S if wait_s is None else wait_s
        self._fd: int | None = None  # found on first use (the file may not exist before)

    def wait(self, write: bool) -> None:
        deadline = time.monotonic() + self.wait_s
        while (holder := self.holder(write)) is not None:
            if time.monotonic() >= deadline:
                raise StorageError(
                    str(self.path),
                    f"locked by process {holder} for more than {self.wait_s:g} s",
                    "that process holds SQLite's lock on Chroma's database (another llmops "
                    "process writing, or a sqlite3 shell in a transaction): end it and retry",
                )
            time.sleep(POLL_S)

    def holder(self, write: bool) -> int | None:
        """The pid of another process holding a lock that blocks us, else None."""
        if self._fd is None:
            self._fd = _descriptor(self.path)
            if self._fd is None:
                return None
        # a reader is blocked by a PENDING or EXCLUSIVE lock, a writer also by a RESERVED one
        checks = [(PENDING_BYTE, 1, False), (SHARED_FIRST, SHARED_SIZE, False)]
        if write:
            checks.append((RESERVED_BYTE, 1, True))
        for start, length, exclusive in checks:
            pid = _conflict(self._fd, start, length, exclusive)
            if pid is not None:
                return pid
        return None

    def close(self) -> None:
        """Nothing to release: the descriptor stays open on purpose (see ``_descriptor``)."""


_DESCRIPTORS: dict[Path, tuple[int, int]] = {}  # file -> (inode, descriptor), kept open
_DESCRIPTORS_LOCK = threading.Lock()


def _descriptor(path: Path) -> int | None:
    """One descriptor per file for the life of the process: closing a descriptor of a file drops
    every POSIX lock this process holds on it (Chroma's own connection's too)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return None  # not created yet: nothing to wait for
    with _DESCRIPTORS_LOCK:
        known = _DESCRIPTORS.get(path)
        if known is None or known[0] != inode:  # first use, or the file was replaced
            known = _DESCRIPTORS[path] = (inode, os.open(path, os.O_RDONLY))
        return known[1]


def _conflict(fd: int, start: int, length: int, write: bool) -> int | None:
    kind = fcntl.F_WRLCK if write else fcntl.F_RDLCK
    # struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
    query = struct.pack("hhqqi4x", kind, os.SEEK_SET, start, length, 0)
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    found, _, _, _, pid = struct.unpack("hhqqi4x", answer)
    return None if found == fcntl.F_UNLCK else int(pid)


def map_error(exc: BaseException, path: Path | None) -> StorageError | None:
    """Chroma's (or the OS's) error of the embedded folder ``path`` as a ``StorageError``; None
    for anything else (a bad request, a bug, a Chroma server's error)."""
    internal = type(exc).__module__.startswith("chromadb") and type(exc).__name__ == "InternalError"
    if path is None or not (internal or isinstance(exc, OSError | sqlite3.Error)):
        return None
    database = path / "chroma.sqlite3"
    if is_locked(exc):
        return storage_error(exc, database, LOCK_WAIT_S)
    if is_corrupt(exc):
        return storage_error(exc, database, LOCK_WAIT_S, FIX_CORRUPT)
    if is_disk_full(exc, path):
        return storage_error(exc, path)
    if any(sign in str(exc).lower() for sign in _DAMAGED):
        return StorageError(str(path), f"damaged ({exc})", FIX_REBUILD)
    return None


def quarantine(path: Path, exc: StorageError) -> Path:
    """Move the damaged folder ``path`` aside (kept for inspection) and leave an empty one; the
    index's records no longer match it, so the next ingestion rebuilds from the sources."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        path.rename(aside)
        path.mkdir()
    except OSError as move:
        raise StorageError(
            str(path), exc.problem, f"move the folder aside ({move}), then {FIX_REBUILD}"
        ) from exc
    log.error(
        "Chroma index %s: %s; moved it aside to %s: the next `llmops ingest` rebuilds the "
        "index from the sources",
        path, exc.problem, aside,
    )  # fmt: skip
    return aside


def forget_client(path: Path) -> None:
    """Drop Chroma's cached client of ``path`` (Chroma keeps one per folder for the process,
    also when opening the folder failed, so a second open would get the broken one)."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient
    except ImportError:  # pragma: no cover - a Chroma without the cache
        return
    systems = getattr(SharedSystemClient, "_identifier_to_system", {})
    refcounts = getattr(SharedSystemClient, "_identifier_to_refcount", {})
    systems.pop(str(path), None)
    refcounts.pop(str(path), None)
