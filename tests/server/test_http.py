"""The HTTP API end to end, through FastAPI's TestClient (lifespan included)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.server import create_app
from tests.conftest import ConfigWriter


@pytest.fixture
def config(write_config: ConfigWriter) -> Path:
    return write_config(server={"max_question_chars": 200, "max_top_k": 10, "max_body_bytes": 4096})


@pytest.fixture
def client(config: Path) -> Iterator[TestClient]:
    rag = RAG.from_config(config)
    rag.start()
    rag.ingest()
    with TestClient(create_app(rag)) as test_client:
        yield test_client


def test_query_returns_answer_sources_latency_and_request_id(client: TestClient) -> None:
    response = client.post("/query", json={"question": "How do I restore a backup?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"answer", "sources", "latency_ms", "request_id", "abstained", "generator"}
    source = body["sources"][0]
    assert set(source) >= {
        "document_id",
        "chunk_id",
        "source",
        "page",
        "heading",
        "score",
        "snippet",
    }
    assert source["source"] == "docs/backup.md" and source["heading"]
    assert response.headers["x-request-id"] == body["request_id"]


def test_a_client_request_id_is_kept_for_correlation_not_as_the_key(client: TestClient) -> None:
    response = client.post("/query", json={"question": "pricing"}, headers={"X-Request-ID": "abc"})
    request_id = response.json()["request_id"]
    assert request_id != "abc" and response.headers["x-request-id"] == request_id
    assert response.headers["x-correlation-id"] == "abc"


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({}, 422, "question"),
        ({"question": ""}, 422, "question"),
        ({"question": "   "}, 400, "empty"),
        ({"question": "x" * 201}, 400, "limit is 200"),
        ({"question": "ok", "top_k": 11}, 400, "outside 1..10"),
        ({"question": "ok", "top_k": 0}, 422, "top_k"),
        ({"question": "ok", "colour": "red"}, 422, "colour"),
        ({"question": "ok", "filters": {"page": {"near": 1}}}, 400, "unknown operator 'near'"),
        ({"question": "ok", "filters": {"page": {"gt": "x"}}}, 400, "needs a number"),
        ({"question": 42}, 422, "question"),
    ],
)
def test_bad_requests_get_4xx_with_a_reason(
    client: TestClient, body: dict[str, object], status: int, reason: str
) -> None:
    response = client.post("/query", json=body)
    assert response.status_code == status, response.text
    assert reason in response.text


def test_invalid_json_and_oversized_body(client: TestClient) -> None:
    bad = client.post("/query", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 422
    big = client.post("/query", json={"question": "x" * 10_000})
    assert big.status_code == 413 and "larger than 4096" in big.text


def test_health_ready_stats(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["ready"] is True
    stats = client.get("/stats").json()
    assert stats["chunks"] > 0 and stats["documents"] == 4 and stats["collection"]


def test_ingest_job_runs_in_background(client: TestClient, corpus: Path) -> None:
    (corpus / "faq.md").write_text("# FAQ\n\nWidgetron supports dark mode since version 3.\n")
    started = client.post("/ingest", json={})
    assert started.status_code == 202
    job_id = started.json()["job_id"]
    for _ in range(100):
        job = client.get(f"/ingest/{job_id}").json()
        if job["status"] != "running":
            break
        time.sleep(0.05)
    assert job["status"] == "succeeded", job
    assert job["report"]["added"] == 1 and job["report"]["unchanged"] == 4
    assert client.get("/ingest/nope").status_code == 404
    answer = client.post("/query", json={"question": "Does Widgetron have dark mode?"}).json()
    assert answer["sources"][0]["source"] == "docs/faq.md"


def test_not_ready_before_first_ingestion(config: Path) -> None:
    with TestClient(create_app(RAG.from_config(config))) as client:
        assert client.get("/ready").status_code == 503
        response = client.post("/query", json={"question": "hello"})
        assert response.status_code == 503 and "llmops ingest" in response.json()["detail"]


def test_openapi_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/query", "/ingest", "/ingest/{job_id}", "/health", "/ready", "/stats"} <= set(
        spec["paths"]
    )


def test_queries_are_served_while_an_ingestion_runs(client: TestClient, corpus: Path) -> None:
    for i in range(25):
        paragraphs = "\n\n".join(
            f"Widget model {i}-{j} ships with a {j}-year warranty and a spare battery." * 3
            for j in range(12)
        )
        (corpus / f"catalogue-{i:02d}.md").write_text(f"# Catalogue {i}\n\n{paragraphs}\n")
    job_id = client.post("/ingest", json={"full": True}).json()["job_id"]
    answered_while_running = 0
    for _ in range(200):
        response = client.post("/query", json={"question": "How do I restore a backup?"})
        assert response.status_code == 200
        if client.get(f"/ingest/{job_id}").json()["status"] == "running":
            answered_while_running += 1
        else:
            break
    assert answered_while_running >= 3
    assert client.get(f"/ingest/{job_id}").json()["status"] in ("running", "succeeded")


def test_shutdown_stops_a_running_ingestion_which_the_next_one_completes(
    write_config: ConfigWriter, corpus: Path
) -> None:
    """Several batches (512 chunks each): shutdown comes after the first one is written."""
    config = write_config(embedder={"type": "hashing"})
    for i in range(120):
        paragraphs = "\n\n".join(
            f"Gadget {i}-{j} comes with a {j}-year guarantee and a charging cable." * 3
            for j in range(12)
        )
        (corpus / f"gadgets-{i:02d}.md").write_text(f"# Gadgets {i}\n\n{paragraphs}\n")
    rag = RAG.from_config(config)
    with TestClient(create_app(rag)) as client:
        job_id = client.post("/ingest", json={}).json()["job_id"]
        while client.get(f"/ingest/{job_id}").json()["files_done"] == 0:
            time.sleep(0.02)
        started = time.perf_counter()
    stopping = time.perf_counter() - started
    job = client.app.state.jobs[job_id]
    assert job.status == "failed" and "shutting down" in str(job.error), job
    assert job.files_done < job.files_total and stopping < 10
    with RAG.from_config(config) as again:
        report = again.ingest()
        chunks = again.stats()["chunks"]
        # what was written before the stop is kept (a batch queued behind it may be too)
        assert report.unchanged >= job.files_done and report.added > 0
        assert report.unchanged + report.added == 124
    with RAG.from_config(config) as fresh:
        assert fresh.ingest(full=True).chunks_total == chunks  # no duplicates, no gaps
