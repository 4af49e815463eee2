"""`llmops finetune dataset from-log`: answered, positively rated requests of the request log
become chat JSONL that the fine-tuning reader loads; hashed or redacted rows stay out."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from llmops import RAG
from llmops.cli.main import app as cli
from llmops.config.monitoring import RequestLogConfig
from llmops.finetune.datasets import read_records
from llmops.monitoring.events import QueryEvent
from llmops.monitoring.request_log import EXPORTED, RequestLog
from llmops.pipelines.training_set import export_from_log
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def turns(line: dict[str, Any]) -> tuple[str, str]:
    user, assistant = line["messages"]
    assert user["role"] == "user" and assistant["role"] == "assistant"
    return user["content"], assistant["content"]


# one app, real traffic over HTTP -----------------------------------------------------------
RESTORE = "How do I restore a backup?"  # the extractive generator abstains on it here
PRICE = "What does the team edition cost?"
INSTALL = "How do I install Widgetron?"
COLOUR = "How do I change the paint colour of new widgets?"


def serve(rag: RAG, ratings: Sequence[tuple[str, float | None]]) -> list[str]:
    """Ask each question over HTTP, rate it (None: not rated); the request ids in order."""
    ids = []
    with TestClient(create_app(rag)) as client:
        for question, reward in ratings:
            answered = client.post("/query", json={"question": question})
            assert answered.status_code == 200, answered.text
            ids.append(answered.headers["x-request-id"])
            if reward is not None:
                rated = client.post("/feedback", json={"request_id": ids[-1], "reward": reward})
                assert rated.status_code == 200, rated.text
            time.sleep(0.01)  # distinct times: newest first is well defined
    return ids


@pytest.fixture
def app_config(write_config: ConfigWriter) -> Path:
    return write_config(embedder=HASHING)


def test_positive_answers_become_chat_examples_with_passages(
    app_config: Path, tmp_path: Path
) -> None:
    with RAG.from_config(app_config) as rag:
        rag.ingest()
        ratings = [
            (INSTALL, 1),
            (PRICE, 0),
            (COLOUR, None),
            (INSTALL, 1),
            (COLOUR, 1),
            (RESTORE, 1),
        ]
        ids = serve(rag, ratings)
        assert rag.monitor.request_log is not None
        logged = {r["request_id"]: r for r in rag.monitor.request_log.rows()}
        assert logged[ids[0]]["answer"] and logged[ids[0]]["answer_mode"] == "keep"
        assert logged[ids[5]]["abstained"]
        out = tmp_path / "train.jsonl"
        report = rag.history.export_training_set(out)
        sparse, active = rag.components.sparse, rag.components.records.active()
        assert sparse is not None and active is not None
        written = lines(out)
        texts = [
            [
                sparse.chunks(active.collection, [i])[i].text
                for i in logged[w["request_id"]]["retrieved_ids"]
            ]
            for w in written
        ]

    # positive only, newest first, the repeated question once (its newest request)
    assert [w["request_id"] for w in written] == [ids[4], ids[3]]
    assert [turns(w) for w in written] == [
        (COLOUR, logged[ids[4]]["answer"]),
        (INSTALL, logged[ids[3]]["answer"]),
    ]
    assert "pip install widgetron" in turns(written[1])[1]  # the extractive answer, in clear
    assert [w["context"] for w in written] == texts and all(texts)
    assert (report.rows, report.written, report.with_context) == (6, 2, 2)
    assert (report.below_feedback, report.duplicates, report.abstained) == (2, 1, 1)
    assert report.not_in_clear == 0
    assert report.missing_passages == 0

    # the fine-tuning job's chat reader loads it, putting the passages into the prompt
    records = read_records(out, "chat", context_header="Answer from the passages.")
    assert len(records) == 2
    user = records[1].messages[-2]["content"] if records[1].messages else ""
    assert user.startswith("Answer from the passages.") and user.endswith(f"Question: {INSTALL}")
    assert f"[1] {texts[1][0]}" in user


def test_no_context_and_cli(app_config: Path, tmp_path: Path) -> None:
    with RAG.from_config(app_config) as rag:
        rag.ingest()
        serve(rag, [(INSTALL, 1), (PRICE, 0.5)])
    out = tmp_path / "plain.jsonl"
    args = ["finetune", "dataset", "from-log", str(app_config), "-o", str(out), "--no-context"]
    result = CliRunner().invoke(cli, [*args, "--min-feedback", "0.5"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 examples" in result.output and "skipped 0 of 2" in result.output
    assert [turns(w)[0] for w in lines(out)] == [PRICE, INSTALL]
    assert all("context" not in w for w in lines(out))
    result = CliRunner().invoke(cli, [*args, "--since", "2999-01-01"])
    assert result.exit_code == 0 and "wrote 0 examples" in result.output, result.output
    assert out.read_text() == ""


@pytest.mark.parametrize("modes", [{"question": "hash"}, {"question": "keep", "answer": "redact"}])
def test_rows_stored_hashed_or_redacted_stay_out(
    write_config: ConfigWriter, tmp_path: Path, modes: dict[str, str]
) -> None:
    config = write_config(embedder=HASHING, monitoring={"request_log": modes})
    with RAG.from_config(config) as rag:
        rag.ingest()
        serve(rag, [(COLOUR, 1), (INSTALL, 1), (PRICE, 0)])
        report = rag.history.export_training_set(tmp_path / "train.jsonl")
        assert rag.monitor.request_log is not None
        stored = rag.monitor.request_log.rows()
    assert report.written == 0 and report.not_in_clear == 2 and report.below_feedback == 1
    assert (tmp_path / "train.jsonl").read_text() == ""
    everything = json.dumps(stored)
    assert (INSTALL in everything) == (modes["question"] == "keep")
    if modes.get("answer") == "redact":
        assert all(r["answer"] is None and r["answer_mode"] == "redact" for r in stored)


# the log alone ------------------------------------------------------------------------------
def event(
    n: int, question: str, answer: str, ids: tuple[str, ...] = ("c1",), **kw: Any
) -> QueryEvent:
    return QueryEvent(
        request_id=f"r{n}",
        question=question,
        answer=answer,
        answer_chars=len(answer),
        pipeline="app",
        backend="extractive",
        retrieved_ids=ids,
        scores=tuple(0.9 for _ in ids),
        time=time.time() - 100 + n,
        **kw,
    )


@pytest.fixture
def request_log(tmp_path: Path) -> Iterator[RequestLog]:
    log = RequestLog(tmp_path / "requests.sqlite", RequestLogConfig())
    log.start()
    yield log
    log.close()


def test_dedupe_abstained_and_missing_passages(request_log: RequestLog, tmp_path: Path) -> None:
    events = [
        event(0, "Reset my password?", "Use the reset link.", ("a", "gone")),
        event(1, "  reset MY password? ", "use the  reset link.", ("a",)),  # same, normalized
        event(2, "Who are you?", "I do not know.", ("a",), abstained=True),
        event(3, "Where are backups?", "In the archive folder.", ("gone",)),
        event(4, "What is teal?", "A colour.", ("b", "gone")),
        event(5, "Plain chat", "Hello.", ()),  # no retrieval: a plain chat example
    ]
    for e in events:
        request_log.record(e)
    for n in range(6):
        assert request_log.set_feedback(f"r{n}", 1.0)
    passages = {"a": "Passage A.", "b": "Passage B."}
    asked: list[list[str]] = []

    def lookup(ids: Sequence[str]) -> dict[str, str]:
        asked.append(list(ids))
        return {i: passages[i] for i in ids if i in passages}

    out = tmp_path / "train.jsonl"
    report = export_from_log(request_log, out, passages=lookup)
    written = lines(out)
    assert [w["request_id"] for w in written] == ["r5", "r4", "r1"]
    assert [w.get("context") for w in written] == [None, ["Passage B."], ["Passage A."]]
    assert len(asked) == 1  # one batched look-up
    assert (report.duplicates, report.abstained, report.no_passages_left) == (1, 1, 1)
    assert report.missing_passages == 2 and report.written == 3 and report.with_context == 2

    # a system prompt, and the file path instead of an open log
    report = export_from_log(
        request_log.store.path,
        out,
        include_context=False,
        system_prompt="Be brief.",
        min_feedback=2,
    )
    assert report.written == 0 and report.below_feedback == 6
    report = export_from_log(
        request_log.store.path, out, include_context=False, system_prompt="Be brief."
    )
    assert lines(out)[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert report.written == 4
    with pytest.raises(ValueError, match="passages lookup"):
        export_from_log(request_log.store.path, out)


OLD_SCHEMA = """CREATE TABLE requests (
    request_id TEXT PRIMARY KEY, time REAL NOT NULL, pipeline TEXT, variant TEXT, backend TEXT,
    question TEXT, query_chars INTEGER, retrieved_ids TEXT, scores TEXT, top_score REAL,
    sources_above INTEGER, answer_chars INTEGER, abstained INTEGER, latency_ms REAL,
    prompt_tokens INTEGER, completion_tokens INTEGER, feedback REAL, feedback_comment TEXT)"""


def old_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute(OLD_SCHEMA)
        hashed = "0" * 64
        for rid, question, chars in (("old1", "how to restore?", 15), ("old2", hashed, 20)):
            db.execute(
                "INSERT INTO requests (request_id, time, question, query_chars, retrieved_ids, "
                "abstained, feedback) VALUES (?, ?, ?, ?, '[]', 0, 1)",
                (rid, time.time(), question, chars),
            )
    db.close()


def test_a_database_without_the_answer_column_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old_database(path)
    # read as it is (not opened for writing): the new columns read as empty
    report = export_from_log(path, tmp_path / "a.jsonl", include_context=False)
    assert (report.rows, report.no_answer, report.not_in_clear, report.written) == (2, 1, 1, 0)
    log = RequestLog(path, RequestLogConfig())
    log.start()
    try:
        log.record(event(7, "new question", "new answer", ()))
        assert log.set_feedback("r7", 1)
        rows = {r["request_id"]: r for r in log.rows()}
        assert set(EXPORTED) <= set(rows["old1"])
        assert rows["old1"]["answer"] is None and rows["r7"]["answer"] == "new answer"
        assert log.export(tmp_path / "log.csv") == 3
        assert "new answer" in (tmp_path / "log.csv").read_text()
        report = export_from_log(log, tmp_path / "b.jsonl", include_context=False)
    finally:
        log.close()
    assert [turns(w) for w in lines(tmp_path / "b.jsonl")] == [("new question", "new answer")]
    assert (report.no_answer, report.not_in_clear) == (1, 1)
