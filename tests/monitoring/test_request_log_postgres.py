"""The request log in PostgreSQL (``monitoring.request_log.url``): the same rows as the SQLite
file, shared by replicas, kept in memory while the server is away and written when it is back,
and the HTTP face's /query and /feedback landing there. What any store does (fields, modes,
retention, export) runs over both in test_request_log.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.config.monitoring import RequestLogConfig
from llmops.errors import StorageError
from llmops.monitoring.request_log import RequestLog
from llmops.monitoring.request_log_postgres import PostgresRequestStore
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter
from tests.monitoring.test_request_log import event
from tests.postgres import SERVER
from tests.up_server import free_port

psycopg = pytest.importorskip("psycopg")

MakeLog = Callable[..., RequestLog]


@pytest.fixture
def make_log(postgres_url: str) -> Iterator[MakeLog]:
    """Started logs over ``postgres_url`` (or another URL), closed after the test."""
    opened: list[RequestLog] = []

    def make(url: str = postgres_url, **settings: Any) -> RequestLog:
        log = RequestLog(PostgresRequestStore(url), RequestLogConfig(url=url, **settings))
        log.start()
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


def table(url: str) -> list[dict[str, Any]]:
    """What PostgreSQL holds, read past the log."""
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("SELECT * FROM requests ORDER BY time").fetchall()


def cut_connections(url: str) -> None:
    """End the database's connections, as a server restart does."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{SERVER}/test", autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone() != (0,):
            time.sleep(0.05)  # the backends end on their signal


@contextmanager
def database_away(url: str) -> Iterator[None]:
    """The database refuses connections and its open ones are cut, as when its server is
    down; back as it was after the block."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{SERVER}/test", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            cut_connections(url)
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_the_rows_are_those_of_the_sqlite_log(
    make_log: MakeLog, postgres_url: str, tmp_path: Path
) -> None:
    """The same events give the same rows, value for value, feedback included."""
    postgres = make_log()
    sqlite = RequestLog(tmp_path / "requests.sqlite", RequestLogConfig())
    sqlite.start()
    try:
        for n in range(5):
            postgres.record(same := event(n))
            sqlite.record(same)
        for log in (postgres, sqlite):
            assert log.set_feedback("r3", -1, "wrong page")
        rows = postgres.rows()
        assert len(rows) == 5 and rows == sqlite.rows()
        stored = table(postgres_url)[3]  # the table itself, as another client reads it
        assert (stored["feedback"], stored["feedback_comment"]) == (-1, "wrong page")
    finally:
        sqlite.close()


def test_replicas_share_one_log(make_log: MakeLog, postgres_url: str) -> None:
    with ThreadPoolExecutor(2) as pool:  # replicas starting together create the table once
        first, second = pool.map(lambda _: make_log(), range(2))
    for n in range(3):
        first.record(event(n))
        second.record(event(10 + n))
    second.record(event(1))  # a request id already logged by the other: one row stays
    first.flush()
    second.flush()
    ids = {"r0", "r1", "r2", "r10", "r11", "r12"}
    assert {r["request_id"] for r in first.rows()} == ids
    assert second.rows() == first.rows()
    assert second.set_feedback("r1", 1.0, "the first replica answered")
    assert next(r for r in first.rows() if r["request_id"] == "r1")["feedback"] == 1.0
    assert len(table(postgres_url)) == 6


def test_a_log_read_without_starting_it(make_log: MakeLog, postgres_url: str) -> None:
    """`llmops requests export` reads without starting the log: nothing before the table
    exists, the rows once a replica wrote them."""
    reader = RequestLog(PostgresRequestStore(postgres_url), RequestLogConfig())
    assert reader.rows() == []
    writer = make_log()
    writer.record(event(0))
    writer.flush()
    assert [r["request_id"] for r in reader.rows()] == ["r0"]


def test_a_server_away_keeps_the_rows_and_they_are_written_when_it_is_back(
    make_log: MakeLog, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = make_log()
    log.record(event(0))
    log.flush()
    with database_away(postgres_url):
        with caplog.at_level(logging.ERROR):
            for n in range(1, 6):
                log.record(event(n))
            log.flush()  # returns: the write failed, the rows are kept
        assert log.pending == 5 and log.dropped == 0
        assert any("keeping them to retry" in r.getMessage() for r in caplog.records)
        with pytest.raises(StorageError, match="not currently accepting connections") as fault:
            log.set_feedback("r0", 1.0)  # POST /feedback answers 503 with the reason
        assert str(fault.value).startswith(f"{postgres_url}: PostgreSQL failed")
        with pytest.raises(StorageError):
            log.rows()
    log.flush()  # a new connection: the kept rows go in
    assert log.pending == 0 and log.dropped == 0
    assert [r["request_id"] for r in log.rows()] == [f"r{n}" for n in range(6)]
    assert log.set_feedback("r0", 1.0)


def test_a_cut_connection_is_replaced_without_an_error(
    make_log: MakeLog, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = make_log()
    log.record(event(0))
    log.flush()
    cut_connections(postgres_url)  # the server restarted since the last write
    with caplog.at_level(logging.ERROR):
        assert log.set_feedback("r0", 1.0)  # no 503 while the server answers
        log.record(event(1))
        log.flush()
    assert log.pending == 0 and [r["feedback"] for r in log.rows()] == [1.0, None]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_server_down_at_start_does_not_stop_the_app(
    make_log: MakeLog, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql://llmops:hunter2@127.0.0.1:{free_port()}/requests"
    with caplog.at_level(logging.ERROR):
        log = make_log(url)  # started: the rows wait for the server
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)
    log.record(event(0))
    log.flush()
    assert log.pending == 1
    with pytest.raises(StorageError) as fault:
        log.set_feedback("r0", 1.0)
    message = str(fault.value)
    where = url.replace(":hunter2", "")
    assert message.startswith(f"{where}: PostgreSQL failed") and "hunter2" not in message
    assert "monitoring.request_log.url" in message
    log.close()
    assert log.dropped == 1  # still unwritten at close: counted


def test_a_restarted_log_keeps_its_rows_and_never_replaces_one(
    make_log: MakeLog, postgres_url: str
) -> None:
    before = make_log()
    for n in range(3):
        before.record(event(n))
    assert before.set_feedback("r1", 1.0)
    before.close()
    after = make_log()
    after.record(event(1, "asked again with the same id"))
    after.record(event(3))
    rows = after.rows()
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2", "r3"]
    assert rows[1]["question"] == "how do I restore?" and rows[1]["feedback"] == 1.0


def test_a_table_of_an_older_version_gets_the_new_columns(
    make_log: MakeLog, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            "CREATE TABLE requests (request_id TEXT PRIMARY KEY, time DOUBLE PRECISION NOT NULL, "
            "pipeline TEXT, variant TEXT, backend TEXT, question TEXT, query_chars INTEGER, "
            "retrieved_ids TEXT, scores TEXT, top_score DOUBLE PRECISION, sources_above INTEGER, "
            "answer_chars INTEGER, abstained INTEGER, latency_ms DOUBLE PRECISION, "
            "prompt_tokens INTEGER, completion_tokens INTEGER, feedback DOUBLE PRECISION, "
            "feedback_comment TEXT)"
        )
        conn.execute(
            "INSERT INTO requests (request_id, time, question, query_chars, retrieved_ids, "
            "abstained) VALUES ('old', %s, 'q', 1, '[]', 0)",
            (time.time() - 1,),
        )
    log = make_log()
    log.record(event(0))
    rows = {r["request_id"]: r for r in log.rows()}
    assert rows["old"]["trace_id"] is None and rows["old"]["question_mode"] is None
    assert rows["r0"]["trace_id"] == f"{0:032x}"


def test_query_and_feedback_over_http_land_in_postgresql(
    write_config: ConfigWriter, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUEST_LOG_URL", postgres_url)
    monitoring = {"request_log": {"url": "${REQUEST_LOG_URL}"}}
    rag = RAG.from_config(write_config(embedder=HASHING, monitoring=monitoring))
    rag.start()
    rag.ingest()
    with TestClient(create_app(rag)) as client:
        answered = client.post("/query", json={"question": "How do I restore a backup?"})
        assert answered.status_code == 200, answered.text
        request_id = answered.json()["request_id"]
        rated = client.post(
            "/feedback", json={"request_id": request_id, "thumbs": "up", "comment": "spot on"}
        )
        assert rated.status_code == 200, rated.text
        (row,) = table(postgres_url)
        assert row["request_id"] == request_id and row["pipeline"] == "testapp"
        assert row["question"] == "How do I restore a backup?"
        assert (row["feedback"], row["feedback_comment"]) == (1.0, "spot on")
        unknown = client.post("/feedback", json={"request_id": "nope", "thumbs": "up"})
        assert unknown.status_code == 404
        with database_away(postgres_url):
            refused = client.post("/feedback", json={"request_id": request_id, "reward": 0.0})
            assert refused.status_code == 503, refused.text
            assert f"{postgres_url}: PostgreSQL failed" in refused.json()["detail"]
            asked = client.post("/query", json={"question": "Where are the backups?"})
            assert asked.status_code == 200  # queries are answered, their rows kept
        later = {"request_id": asked.json()["request_id"], "reward": 0.5}
        assert client.post("/feedback", json=later).status_code == 200  # the kept row is in
    assert [r["feedback"] for r in table(postgres_url)] == [1.0, 0.5]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "mysql://db/requests"}, r"PostgreSQL URL.*got a mysql:// URL"),
        ({"url": "postgresql+psycopg://db/x"}, r"SQLAlchemy's form: drop the '\+driver'"),
        ({"url": "db.internal:5432/requests"}, "got no scheme"),
        ({"url": "postgresql://db/x", "path": "log.sqlite"}, r"path is for SQLite only"),
    ],
)
def test_the_url_must_be_postgresql(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RequestLogConfig(**settings)


def test_an_empty_url_means_the_sqlite_file() -> None:
    """`url: ${REQUEST_LOG_URL:-}`: PostgreSQL where the variable is set, SQLite elsewhere."""
    assert RequestLogConfig(url="").url is None
    assert RequestLogConfig(url="postgres://db/x").url == "postgres://db/x"
