"""The request log's rows in PostgreSQL (``monitoring.request_log.url``), so that several
replicas of an app keep one log: the same columns as the SQLite file, the table created if
missing, inserts idempotent on ``request_id``.

One connection (psycopg 3) serves the writer thread and feedback, one call at a time; a
connection that fails is dropped and the next call opens another, a reused one that fails is
tried once more on a fresh one (the server restarted since). Every failure to reach the
server or to run a statement there is a ``StorageError`` naming the server: the log's writer
keeps its rows for the next round, ``POST /feedback`` answers 503."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from llmops.deps import require
from llmops.errors import StorageError
from llmops.monitoring.request_store import ADDED_COLUMNS, COLUMNS, Row

if TYPE_CHECKING:
    from psycopg import Connection

log = logging.getLogger(__name__)
Result = TypeVar("Result")

CONNECT_TIMEOUT_S = 5  # unless the URL sets connect_timeout
SCHEMA_LOCK = 0x6C6C6D6F  # an advisory lock: replicas starting together create the table once
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, time DOUBLE PRECISION NOT NULL, pipeline TEXT, variant TEXT,
    backend TEXT, question TEXT, query_chars INTEGER, retrieved_ids TEXT, scores TEXT,
    top_score DOUBLE PRECISION, sources_above INTEGER, answer_chars INTEGER, abstained INTEGER,
    latency_ms DOUBLE PRECISION, prompt_tokens INTEGER, completion_tokens INTEGER,
    feedback DOUBLE PRECISION, feedback_comment TEXT, correlation_id TEXT, answer TEXT,
    question_mode TEXT, answer_mode TEXT, trace_id TEXT
)""",
    "CREATE INDEX IF NOT EXISTS requests_time ON requests (time)",
    *(f"ALTER TABLE requests ADD COLUMN IF NOT EXISTS {c} {t}" for c, t in ADDED_COLUMNS.items()),
)
# the server's own ids key the rows: a row, once written, is never replaced (a batch written
# again after its commit was lost on the way back is the same rows)
_INSERT = (
    f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
    "ON CONFLICT (request_id) DO NOTHING"
)
_SELECT = "SELECT * FROM requests WHERE time >= %s AND time < %s ORDER BY time"
FIX = (
    "check that the PostgreSQL server is up and that monitoring.request_log.url names it; "
    "query rows are kept in memory meanwhile and written when it answers"
)


def redacted(url: str) -> str:
    """``url`` without its password and parameters, for messages."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    hosts = parts.netloc.rpartition("@")[2]  # host:port as written (libpq allows several)
    return f"{parts.scheme}://{user}{hosts}{parts.path}"


class PostgresRequestStore:
    """The rows in the ``requests`` table of the database at ``url`` (a libpq URL; its
    ``options=-csearch_path=...`` picks another schema, e.g. one per app)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redacted(url)
        self.shared = True
        self._conn: Connection[Any] | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Connect and create the table; the server unreachable is logged, not raised: the
        app serves, and the rows wait in memory until the server answers."""
        try:
            self._run(lambda conn: None)
        except StorageError as exc:
            log.error("request log: %s", exc)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def insert(self, rows: Sequence[Row]) -> None:
        def insert(conn: Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(_INSERT, rows)

        self._run(insert)

    def set_feedback(self, request_id: str, score: float, comment: str | None) -> bool:
        def update(conn: Connection[Any]) -> bool:
            cursor = conn.execute(
                "UPDATE requests SET feedback = %s, feedback_comment = %s WHERE request_id = %s",
                (score, comment, request_id),
            )
            return cursor.rowcount > 0

        return self._run(update)

    def prune(self, cutoff: float | None, max_rows: int | None) -> int:
        def delete(conn: Connection[Any]) -> int:
            deleted = 0
            with conn.transaction():
                if cutoff is not None:
                    old = conn.execute("DELETE FROM requests WHERE time < %s", (cutoff,))
                    deleted += old.rowcount
                if max_rows is not None:
                    deleted += conn.execute(
                        "DELETE FROM requests WHERE request_id IN (SELECT request_id FROM "
                        "requests ORDER BY time DESC OFFSET %s)",
                        (max_rows,),
                    ).rowcount
            return deleted

        return self._run(delete)

    def select(self, since: float, until: float) -> Iterator[Mapping[str, Any]]:
        psycopg = require("psycopg", extra="postgres")
        rows = require("psycopg.rows", extra="postgres")
        try:
            with (
                self._connect(autocommit=False) as conn,
                conn.cursor(name="llmops_requests", row_factory=rows.dict_row) as cursor,
            ):
                cursor.execute(_SELECT, (since, until))
                yield from cursor
        except psycopg.errors.UndefinedTable:
            return  # nothing was ever written there
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc

    # connections -----------------------------------------------------------------------------
    def _run(self, call: Callable[[Connection[Any]], Result]) -> Result:
        """``call`` on the shared connection, opened (and the table created) when there is
        none; a reused connection that fails is replaced and ``call`` tried once more (every
        call here may be repeated: inserts skip the rows already in)."""
        psycopg = require("psycopg", extra="postgres")
        with self._lock:
            if self._conn is not None:
                try:
                    return call(self._conn)
                except psycopg.OperationalError as exc:
                    self._drop_connection()
                    log.info("request log %s: connection lost (%s), reconnecting", self.where, exc)
            try:
                return call(self._connection())
            except psycopg.OperationalError as exc:
                self._drop_connection()
                raise self._fault(exc) from exc

    def _connection(self) -> Connection[Any]:
        if self._conn is None:
            conn = self._connect(autocommit=True)
            try:
                # a commit does not wait for its WAL flush: a server crash may lose the last
                # moment's rows, never corrupt them (as the SQLite log's synchronous=NORMAL)
                conn.execute("SET synchronous_commit = off")
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    for statement in SCHEMA:
                        conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _connect(self, autocommit: bool) -> Connection[Any]:
        psycopg = require("psycopg", extra="postgres")
        options = psycopg.conninfo.conninfo_to_dict(self.url)
        options.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        connection: Connection[Any] = psycopg.connect(autocommit=autocommit, **options)
        return connection

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # it is broken already
                self._conn.close()
            self._conn = None

    def _fault(self, exc: BaseException) -> StorageError:
        reason = " ".join(str(exc).split())
        return StorageError(self.where, f"PostgreSQL failed ({type(exc).__name__}: {reason})", FIX)
