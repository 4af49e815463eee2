"""API keys: ``llmk_<id>_<secret>``, shown once at creation, stored as
HMAC-SHA256(server secret, key) in SQLite under the app's data dir.

A request is verified by its id (the visible prefix, safe for logs) and a constant-time
comparison of digests. Verified rows are cached in memory for ``cache_ttl_s`` seconds, so a
request costs no SQLite read; a revocation reaches a running server within that time.

A key may carry its own limits (``--rpm``, ``--concurrent``, ``--tokens-per-day``), each
replacing the app's default for that key. A key's last use is stored at most once a minute
(``LAST_USED_EVERY_S``), so ``llmops keys list`` shows stale keys without a write per request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from llmops.config.auth import SCOPES, SECRET_ENV, RateLimits
from llmops.db import add_missing_columns, named_faults, open_database, transaction
from llmops.errors import LLMOpsError

log = logging.getLogger("llmops.access")

PREFIX = "llmk"
ID_CHARS = 8
MIN_SECRET_CHARS = 16
KEYS_FILE = "keys.sqlite"
LAST_USED_EVERY_S = 60.0
WAIT_S = 2.0
"""How long a request waits for the key store another process has locked; then 503."""
COLUMNS = "id, digest, name, scopes, created, expires, revoked, limits, last_used"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    revoked REAL,
    limits TEXT,
    last_used REAL
);
"""


class AccessError(LLMOpsError):
    """API keys cannot be used as configured (no server secret), or a key id is unknown."""


@dataclass(frozen=True)
class KeyInfo:
    """A stored key, without its secret."""

    id: str
    name: str
    scopes: frozenset[str]
    created: float
    expires: float | None = None
    revoked: float | None = None
    limits: RateLimits = field(default_factory=RateLimits)
    """The key's own limits; a null one falls back to the app's (``effective_limits``)."""
    last_used: float | None = None

    def effective_limits(self, defaults: RateLimits) -> RateLimits:
        """Each of the key's limits, or the app's where the key sets none."""
        own = self.limits.model_dump(exclude_none=True)
        return defaults.model_copy(update=own)

    def usable(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)

    def status(self, now: float) -> str:
        if self.revoked is not None:
            return "revoked"
        return "expired" if not self.usable(now) else "active"


def server_secret(environ: dict[str, str] | None = None) -> bytes:
    """The HMAC secret from ``LLMOPS_KEY_SECRET``; a clear error when it is missing or short."""
    value = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    if len(value) < MIN_SECRET_CHARS:
        raise AccessError(
            f"API keys are on but {SECRET_ENV} is {'too short' if value else 'not set'}: set it "
            f"to a random string of at least {MIN_SECRET_CHARS} characters (e.g. `python -c "
            "'import secrets; print(secrets.token_urlsafe(32))'`), the same on every replica; "
            "or turn keys off with server.auth.enabled: false on a trusted network"
        )
    return value.encode()


def split_key(key: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != ID_CHARS or not parts[2]:
        return None
    return parts[1], parts[2]


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(s.strip() for s in scopes if s.strip())
    unknown = sorted(chosen - set(SCOPES))
    if unknown or not chosen:
        raise AccessError(f"unknown or no scopes {unknown}; choose from {', '.join(SCOPES)}")
    return chosen


class KeyStore:
    """Create, list, revoke, rotate and verify keys of one app (one SQLite file)."""

    def __init__(self, data_dir: Path, secret: bytes, cache_ttl_s: float = 5.0) -> None:
        self.path = data_dir / KEYS_FILE
        self._db: sqlite3.Connection | None = _open(self.path)
        self.secret, self.cache_ttl_s = secret, cache_ttl_s
        self._cache: dict[str, tuple[float, str | None, KeyInfo | None]] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def _digest(self, key: str) -> str:
        return hmac.new(self.secret, key.encode(), hashlib.sha256).hexdigest()

    def create(
        self,
        name: str,
        scopes: Iterable[str],
        expires: float | None = None,
        limits: RateLimits | None = None,
    ) -> tuple[KeyInfo, str]:
        """A new key and its text (shown once: only its digest is kept)."""
        key_id = secrets.token_hex(ID_CHARS // 2)
        own = limits or RateLimits()
        info = KeyInfo(key_id, name, check_scopes(scopes), time.time(), expires, limits=own)
        key = f"{PREFIX}_{info.id}_{secrets.token_urlsafe(32)}"
        with named_faults(self.path, WAIT_S), transaction(self.db):
            self.db.execute(
                f"INSERT INTO api_keys ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, NULL)",
                (
                    info.id,
                    self._digest(key),
                    name,
                    ",".join(sorted(info.scopes)),
                    info.created,
                    expires,
                    own.model_dump_json(exclude_none=True),
                ),
            )
        return info, key

    def list(self) -> list[KeyInfo]:
        rows = self.db.execute(f"SELECT {COLUMNS} FROM api_keys ORDER BY created").fetchall()
        return [_info(row) for row in rows]

    def get(self, key_id: str) -> KeyInfo:
        row = self._row(key_id)
        if row is None:
            raise AccessError(f"no key with id '{key_id}'; `llmops keys list` shows them")
        return _info(row)

    def _row(self, key_id: str) -> tuple[object, ...] | None:
        with named_faults(self.path, WAIT_S), self._lock:
            query = f"SELECT {COLUMNS} FROM api_keys WHERE id = ?"
            row: tuple[object, ...] | None = self.db.execute(query, (key_id,)).fetchone()
        return row

    def set_limits(self, key_id: str, limits: RateLimits) -> KeyInfo:
        """Replace the key's own limits (running servers see them within ``cache_ttl_s``)."""
        self.get(key_id)
        with named_faults(self.path, WAIT_S), transaction(self.db):
            self.db.execute(
                "UPDATE api_keys SET limits = ? WHERE id = ?",
                (limits.model_dump_json(exclude_none=True), key_id),
            )
        self._cache.pop(key_id, None)
        return self.get(key_id)

    def revoke(self, key_id: str) -> KeyInfo:
        self.get(key_id)
        with named_faults(self.path, WAIT_S), transaction(self.db):
            self.db.execute(
                "UPDATE api_keys SET revoked = COALESCE(revoked, ?) WHERE id = ?",
                (time.time(), key_id),
            )
        self._cache.pop(key_id, None)
        return self.get(key_id)

    def rotate(self, key_id: str) -> tuple[KeyInfo, str]:
        """A new key with the same name, scopes, expiry and limits; the old one is revoked."""
        old = self.get(key_id)
        new = self.create(old.name, old.scopes, old.expires, old.limits)
        self.revoke(key_id)
        return new

    def verify(self, key: str, now: float | None = None) -> KeyInfo | None:
        """The key's info when it is known, matches, and is neither revoked nor expired."""
        parts = split_key(key)
        if parts is None:
            return None
        now = time.time() if now is None else now
        digest, info = self._lookup(parts[0], time.monotonic())
        if digest is None or info is None:
            return None
        if not hmac.compare_digest(digest, self._digest(key)):
            return None
        if not info.usable(now):
            return None
        self._touch(info.id, now)
        return info

    def _touch(self, key_id: str, now: float) -> None:
        """Store the key's last use, at most once per ``LAST_USED_EVERY_S`` per process."""
        if now - self._touched.get(key_id, -math.inf) < LAST_USED_EVERY_S:
            return
        self._touched[key_id] = now
        try:
            with self._lock:
                self.db.execute(
                    "UPDATE api_keys SET last_used = MAX(COALESCE(last_used, 0), ?) WHERE id = ?",
                    (now, key_id),
                )
        except sqlite3.OperationalError as exc:  # busy: the next use stores it
            log.warning("API key %s: last use not stored (%s)", key_id, exc)

    def _lookup(self, key_id: str, now: float) -> tuple[str | None, KeyInfo | None]:
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self.cache_ttl_s:
            return cached[1], cached[2]
        row = self._row(key_id)
        entry = (now, str(row[1]), _info(row)) if row else (now, None, None)
        if len(self._cache) > 10_000:  # unknown ids guessed in bulk must not grow it forever
            self._cache.clear()
        self._cache[key_id] = entry
        return entry[1], entry[2]

    @property
    def db(self) -> sqlite3.Connection:
        # an app stopped and started again (tests, schemathesis) reopens the file it closed
        if self._db is None:
            self._db = _open(self.path)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _open(path: Path) -> sqlite3.Connection:
    db = open_database(path, _SCHEMA, busy_timeout_s=WAIT_S)
    add_missing_columns(db, "api_keys", {"limits": "TEXT", "last_used": "REAL"})
    return db


def _info(row: tuple[object, ...]) -> KeyInfo:
    key_id, _, name, scopes, created, expires, revoked, limits, last_used = row
    return KeyInfo(
        str(key_id),
        str(name),
        frozenset(str(scopes).split(",")),
        float(created),  # type: ignore[arg-type]
        _time(expires),
        _time(revoked),
        _limits(key_id, limits),
        _time(last_used),
    )


def _time(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _limits(key_id: object, text: object) -> RateLimits:
    """A key's stored limits; a row that cannot be read keeps the app's defaults, said once."""
    if not text:
        return RateLimits()
    try:
        return RateLimits.model_validate(json.loads(str(text)))
    except (ValueError, ValidationError) as exc:
        log.warning("API key %s: stored limits unreadable (%s); the app's apply", key_id, exc)
        return RateLimits()


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``15m``, ``90s``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise AccessError(f"duration '{text}': write a number and a unit, e.g. 30d, 12h, 15m")
    return int(number) * units[unit]
