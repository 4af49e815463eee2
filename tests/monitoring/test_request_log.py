"""The request log: batched writes, retention, question privacy, CSV/Parquet export; each test
runs over a SQLite file and over PostgreSQL (one behaviour, two stores)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llmops.config.monitoring import QuestionMode, RequestLogConfig
from llmops.monitoring.events import QueryEvent
from llmops.monitoring.request_log import RequestLog, SqliteRequestStore
from llmops.monitoring.request_log_postgres import PostgresRequestStore
from llmops.monitoring.request_store import RequestStore


def event(n: int, question: str = "how do I restore?", age_days: float = 0.0) -> QueryEvent:
    return QueryEvent(
        request_id=f"r{n}",
        question=question,
        pipeline="app",
        backend="extractive",
        retrieved_ids=("c1", "c2", "c3"),
        scores=(0.8, 0.55, 0.2),
        answer_chars=42,
        abstained=n % 2 == 1,
        latency_ms=12.5 + n,
        trace_id=f"{n:032x}",
        time=time.time() - age_days * 86400,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[type[RequestLog]]:
    opened: list[RequestLog] = []

    def store() -> RequestStore:
        if request.param == "postgres":
            return PostgresRequestStore(request.getfixturevalue("postgres_url"))
        return SqliteRequestStore(tmp_path / "log" / "requests.sqlite")

    def make(**settings: object) -> RequestLog:
        log = RequestLog(store(), RequestLogConfig(**settings))
        log.start()
        opened.append(log)
        return log

    yield make  # type: ignore[misc]
    for log in opened:
        log.close()


def test_rows_hold_every_field(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    for n in range(5):
        log.record(event(n))
    rows = log.rows()
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2", "r3", "r4"]
    first = rows[0]
    assert first["retrieved_ids"] == ["c1", "c2", "c3"] and first["scores"] == [0.8, 0.55, 0.2]
    assert first["top_score"] == 0.8 and first["sources_above"] == 2  # threshold 0.5
    assert first["question"] == "how do I restore?" and first["query_chars"] == 17
    assert [r["abstained"] for r in rows] == [False, True, False, True, False]
    assert first["latency_ms"] == 12.5 and first["answer_chars"] == 42
    assert first["feedback"] is None and first["trace_id"] == f"{0:032x}"
    assert log.set_feedback("r3", -1, "wrong") and not log.set_feedback("nope", 1)
    assert (log.rows()[3]["feedback"], log.rows()[3]["feedback_comment"]) == (-1, "wrong")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("mode", "question", "answer"),
    [
        ("keep", "secret question", "secret answer"),
        ("hash", sha256("secret question"), sha256("secret answer")),
        ("redact", None, None),
    ],
)
def test_question_can_be_hashed_or_redacted(
    make_log, mode: QuestionMode, question: str | None, answer: str | None
) -> None:  # type: ignore[no-untyped-def]
    log = make_log(question=mode)  # the answer's mode defaults to the question's
    log.record(dataclasses.replace(event(0, "secret question"), answer="secret answer"))
    row = log.rows()[0]
    assert (row["question"], row["answer"]) == (question, answer)
    assert (row["question_mode"], row["answer_mode"]) == (mode, mode)
    assert row["query_chars"] == len("secret question")  # the length survives for drift checks
    assert ("secret" in stored_text(log.store)) == (mode == "keep")


def stored_text(store: RequestStore) -> str:
    """Everything the store holds, as text (a SQLite file's write-ahead log too)."""
    if isinstance(store, SqliteRequestStore):
        files = (store.path, store.path.with_name(f"{store.path.name}-wal"))
        return b"".join(f.read_bytes() for f in files if f.exists()).decode(errors="ignore")
    assert isinstance(store, PostgresRequestStore)
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(store.url) as conn:
        return str(conn.execute("SELECT requests::text FROM requests").fetchall())


def test_retention_by_age_and_rows(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log(retention_days=7, max_rows=3)
    for n in range(6):
        log.record(event(n, age_days=10 if n < 2 else 0))
    log.flush()  # the writer prunes on its own too (once a minute)
    log.prune()  # two too old, then one over max_rows (the oldest left)
    assert [r["request_id"] for r in log.rows()] == ["r3", "r4", "r5"]
    log.record(event(9))
    log.flush()
    assert log.prune() == 1


def test_time_window_and_export(make_log, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    for n in range(4):
        log.record(event(n, age_days=2 if n < 2 else 0))
    recent = time.time() - 86400
    assert [r["request_id"] for r in log.rows(since=recent)] == ["r2", "r3"]
    assert log.export(tmp_path / "all.csv") == 4
    with (tmp_path / "all.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2", "r3"]
    assert rows[0]["retrieved_ids"] == '["c1", "c2", "c3"]' and rows[1]["trace_id"] == f"{1:032x}"
    assert log.export(tmp_path / "recent.parquet", since=recent) == 2
    table = pq.read_table(tmp_path / "recent.parquet")
    assert table.column("request_id").to_pylist() == ["r2", "r3"]
    assert table.column("scores").to_pylist()[0] == [0.8, 0.55, 0.2]
    assert table.column("trace_id").to_pylist() == [f"{2:032x}", f"{3:032x}"]
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        log.export(tmp_path / "x.xlsx")


def test_record_is_cheap_and_batched(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    started = time.perf_counter()
    for n in range(2000):
        log.record(event(n))
    per_call = (time.perf_counter() - started) / 2000
    assert per_call < 100e-6  # the request path only enqueues
    assert len(log.rows()) == 2000
