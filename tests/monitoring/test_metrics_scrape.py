"""GET /metrics after real traffic: counters and histograms agree with what was sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from llmops import RAG
from llmops.server import create_app
from tests.conftest import ConfigWriter

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over every series whose labels include ``labels``."""
    return sum(
        value
        for (n, key), value in samples.items()
        if n == name and set(labels.items()) <= set(key)
    )


@pytest.fixture
def rag(write_config: ConfigWriter) -> Iterator[RAG]:
    rag = RAG.from_config(write_config())
    rag.start()
    rag.ingest()
    yield rag
    rag.close()


@pytest.fixture
def client(rag: RAG) -> Iterator[TestClient]:
    with TestClient(create_app(rag)) as test_client:
        yield test_client


@pytest.mark.slow
def test_metrics_add_up_after_traffic(client: TestClient, rag: RAG) -> None:
    questions = ["How do I restore a backup?", "What does the team edition cost?", "teal paint"]
    latencies = []
    for question in questions:
        response = client.post("/query", json={"question": question})
        assert response.status_code == 200
        latencies.append(response.json()["latency_ms"] / 1000)
    with client.stream("POST", "/query", json={"question": "install", "stream": True}) as r:
        assert r.status_code == 200
        r.read()
    assert client.post("/query", json={"question": "x", "rerank": True}).status_code == 400
    assert client.post("/query", json={"question": 42}).status_code == 422
    client.get("/health")

    s = scrape(client)
    query = {"route": "/query", "pipeline": "testapp"}
    assert total(s, "llmops_http_requests_total", status="200", **query) == 4
    assert total(s, "llmops_http_requests_total", status="400", **query) == 1
    assert total(s, "llmops_http_requests_total", status="422", **query) == 1
    assert total(s, "llmops_http_requests_total", route="/health") == 1
    # the histogram's count, +Inf bucket and the counter agree; buckets never decrease
    assert total(s, "llmops_http_request_duration_seconds_count", **query) == 6
    assert total(s, "llmops_http_request_duration_seconds_bucket", le="+Inf", **query) == 6
    answered = {**query, "backend": "extractive", "variant": "default"}
    assert total(s, "llmops_http_requests_total", **answered) == 4
    buckets = sorted(
        (float(dict(key)["le"]), v)
        for (n, key), v in s.items()
        if n == "llmops_http_request_duration_seconds_bucket" and ("status", "200") not in key
        and dict(key)["route"] == "/query" and dict(key)["backend"] == "extractive"
    )  # fmt: skip
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == 4

    assert total(s, "llmops_queries_total", pipeline="testapp") == 4
    assert total(s, "llmops_query_duration_seconds_count") == 4
    assert total(s, "llmops_query_duration_seconds_sum") >= sum(latencies) * 0.99
    for stage in ("embed", "retrieve", "generate"):
        assert total(s, "llmops_stage_duration_seconds_count", stage=stage) == 4, stage
    assert total(s, "llmops_stage_duration_seconds_count", stage="rerank") == 0
    assert total(s, "llmops_errors_total", kind="InvalidRequest") == 1

    assert total(s, "llmops_ingestions_total", status="ok") == 1
    assert total(s, "llmops_ingested_files_total", change="added") == 4
    assert total(s, "llmops_index_chunks") == rag.stats()["chunks"] > 0
    assert total(s, "llmops_ingested_chunks_total") == rag.stats()["chunks"]


@pytest.mark.slow
def test_feedback_lands_in_the_request_log(client: TestClient, rag: RAG) -> None:
    answered = client.post("/query", json={"question": "How do I restore a backup?"})
    request_id = answered.headers["x-request-id"]
    rated = client.post(
        "/feedback", json={"request_id": request_id, "reward": -1, "comment": "off topic"}
    )
    assert rated.status_code == 200 and rated.json()["variant"] is None
    missing = client.post("/feedback", json={"request_id": "nope", "reward": 1})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert rag.monitor.request_log is not None
    (row,) = rag.monitor.request_log.rows()
    assert row["request_id"] == request_id and row["feedback"] == -1
    assert row["feedback_comment"] == "off topic"
    assert row["question"] == "How do I restore a backup?" and row["retrieved_ids"]


def test_metrics_can_be_turned_off(write_config: ConfigWriter) -> None:
    rag = RAG.from_config(write_config(monitoring={"metrics": False}))
    with TestClient(create_app(rag)) as client:
        assert client.get("/metrics").status_code == 404
