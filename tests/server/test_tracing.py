"""Tracing: the spans of one /query reach an OTLP collector over HTTP and over gRPC as one
tree (server span → query → retrieval → embeddings / dense / sparse / fusion, prompt, chat),
with the GenAI attributes; the trace id comes back in X-Trace-ID and traceparent and lands in
the request log; a caller's traceparent is continued; sampling 0 records nothing; off, the SDK
is never imported and no header is sent; ingestion, eval runs and streams are traced, a failed
backend and its retries show beside the fallback that answered; the recent traces are served
at GET /traces."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.pipelines.eval_run import run_suite
from llmops.server import create_app
from llmops.testing.otlp import GrpcCollector, HttpCollector, ReceivedSpan
from tests.conftest import HASHING, ConfigWriter
from tests.eval_suite_data import write_suite

QUESTION = {"question": "How do I restore a backup?"}
SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_SERVER


def traced_app(write_config: ConfigWriter, **tracing: Any) -> Path:
    return write_config(
        embedder=HASHING,
        sparse={"type": "bm25"},
        monitoring={"tracing": {"enabled": True, **tracing}},
    )


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start an app from a config, ingested, under a TestClient; shut its tracing down after."""
    started: list[tuple[RAG, TestClient]] = []

    def start(config: Path) -> tuple[RAG, TestClient]:
        rag = RAG.from_config(config)
        rag.start()
        rag.ingest()
        client = TestClient(create_app(rag))
        client.__enter__()
        started.append((rag, client))
        return rag, client

    yield start
    for rag, client in started:
        client.__exit__(None, None, None)
        rag.components.tracing.shutdown()


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans}


@pytest.mark.parametrize("collector_type", [HttpCollector, GrpcCollector])
def test_a_query_arrives_at_the_collector_as_one_span_tree(
    write_config: ConfigWriter,
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    collector_type: type[HttpCollector] | type[GrpcCollector],
) -> None:
    monkeypatch.setenv("OTLP_TEST_TOKEN", "s3cret")
    exporter = "otlp-http" if collector_type is HttpCollector else "otlp-grpc"
    with collector_type() as collector:
        config = traced_app(
            write_config,
            exporter=exporter,
            endpoint=collector.endpoint,
            headers={"x-collector-token": "${OTLP_TEST_TOKEN}"},
            service_name="widgets-rag",
        )
        rag, client = serve(config)
        response = client.post("/query", json=QUESTION)
        assert response.status_code == 200, response.text
        rag.components.tracing.flush()
        spans = [s for s in collector.wait_for(1) if s.trace_id == response.headers["x-trace-id"]]

    assert collector.headers["x-collector-token"] == "s3cret"
    names = by_name(spans)
    server, query = names["POST /query"], names["query"]
    retrieval, prompt, chat = names["retrieval"], names["prompt"], names["chat extractive"]
    assert server.parent_id is None and server.kind == SERVER_KIND
    assert server.resource["service.name"] == "widgets-rag"
    assert server.attributes["http.route"] == "/query"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["llmops.request_id"] == response.headers["x-request-id"]
    assert query.parent_id == server.span_id
    assert {retrieval.parent_id, prompt.parent_id, chat.parent_id} == {query.span_id}
    for stage in ("embeddings hashing", "search dense", "search sparse", "fusion"):
        assert names[stage].parent_id == retrieval.span_id, stage
    assert names["embeddings hashing"].attributes["gen_ai.operation.name"] == "embeddings"
    assert names["embeddings hashing"].attributes["llmops.embed.batch_size"] == 1
    assert retrieval.attributes["gen_ai.operation.name"] == "retrieval"
    assert retrieval.attributes["llmops.hits"] == len(response.json()["sources"]) > 0
    assert names["search sparse"].attributes["llmops.score.max"] > 0
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "extractive"
    assert chat.attributes["llmops.fallback.position"] == 0
    assert chat.attributes["gen_ai.usage.output_tokens"] >= 0
    assert prompt.attributes["gen_ai.prompt.name"] == rag.config.prompt
    assert query.attributes["llmops.sources"] == len(response.json()["sources"])
    trace_id = response.headers["x-trace-id"]
    version, traced, parent, flags = response.headers["traceparent"].split("-")
    assert (version, traced, parent) == ("00", trace_id, server.span_id)
    assert int(flags, 16) & 1  # sampled


def test_every_span_of_every_query_reaches_the_collector(
    write_config: ConfigWriter, serve: Any
) -> None:
    """The SDK's batch processor exports from the app's own thread: nine spans per /query,
    none lost, under the trace ids the responses name."""
    with HttpCollector() as collector:
        config = traced_app(write_config, exporter="otlp-http", endpoint=collector.endpoint)
        rag, client = serve(config)
        ids = [client.post("/query", json=QUESTION).headers["x-trace-id"] for _ in range(5)]
        rag.components.tracing.flush()
        spans = list(collector.spans)
    per_trace = {i: [s.name for s in spans if s.trace_id == i] for i in ids}
    assert all(len(names) == 9 and "POST /query" in names for names in per_trace.values())


def test_the_trace_id_is_in_the_request_log(write_config: ConfigWriter, serve: Any) -> None:
    rag, client = serve(traced_app(write_config, exporter="none"))
    response = client.post("/query", json=QUESTION)
    assert rag.monitor.request_log is not None
    rag.monitor.request_log.flush()
    rows = rag.monitor.request_log.rows()
    assert [r["trace_id"] for r in rows] == [response.headers["x-trace-id"]]


def test_a_callers_traceparent_is_continued(write_config: ConfigWriter, serve: Any) -> None:
    _rag, client = serve(traced_app(write_config, exporter="none", sample_ratio=0.0))
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    # the caller sampled it: followed although this app samples nothing of its own
    headers = {"traceparent": f"00-{caller_trace}-{caller_span}-01"}
    response = client.post("/query", json=QUESTION, headers=headers)
    assert response.headers["x-trace-id"] == caller_trace
    tree = client.get(f"/traces/{caller_trace}").json()
    (root,) = tree["spans"]
    assert root["name"] == "POST /query" and root["parent_id"] == caller_span


def test_sample_ratio_zero_records_nothing(write_config: ConfigWriter, serve: Any) -> None:
    with HttpCollector() as collector:
        config = traced_app(
            write_config, exporter="otlp-http", endpoint=collector.endpoint, sample_ratio=0.0
        )
        rag, client = serve(config)
        response = client.post("/query", json=QUESTION)
        assert response.status_code == 200
        rag.components.tracing.flush()
        assert collector.spans == [] and collector.exports == 0
    assert "x-trace-id" not in response.headers and "traceparent" not in response.headers
    assert client.get("/traces").json() == {"traces": []}
    assert rag.monitor.request_log is not None
    rag.monitor.request_log.flush()
    assert [r["trace_id"] for r in rag.monitor.request_log.rows()] == [None]


OFF_CHECK = """
import sys
from fastapi.testclient import TestClient
from llmops import RAG
from llmops.server import create_app
rag = RAG.from_config(sys.argv[1])
before = sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))
rag.start()  # Chroma, the vector store, imports the SDK for its own telemetry
rag.ingest()
with TestClient(create_app(rag)) as client:
    response = client.post("/query", json={"question": "How do I restore a backup?"})
    traces = client.get("/traces")
ours = sorted(m for m in sys.modules if m.startswith("llmops.tracing."))
status = [response.status_code, traces.status_code]
print(json.dumps([*status, sorted(response.headers), before, ours]))
"""


def test_off_no_sdk_is_loaded_by_llmops_and_no_header_is_sent(
    write_config: ConfigWriter,
) -> None:
    config = write_config(embedder=HASHING)
    script = "import json\n" + OFF_CHECK
    done = subprocess.run(
        [sys.executable, "-c", script, str(config)], capture_output=True, text=True, check=True
    )
    status, traces, headers, sdk_when_built, our_sdk_modules = json.loads(done.stdout)
    assert (status, traces) == (200, 404)
    assert "x-request-id" in headers and not [h for h in headers if "trace" in h]
    assert sdk_when_built == [] and our_sdk_modules == []


def test_recent_traces_are_listed_and_served_as_a_tree(
    write_config: ConfigWriter, serve: Any
) -> None:
    _rag, client = serve(traced_app(write_config, exporter="none", keep_recent=2))
    ids = [client.post("/query", json=QUESTION).headers["x-trace-id"] for _ in range(3)]
    listed = client.get("/traces", params={"limit": 5}).json()["traces"]
    assert [t["trace_id"] for t in listed] == ids[:0:-1]  # the last two, newest first
    assert listed[0]["name"] == "POST /query" and listed[0]["spans"] >= 9
    assert listed[0]["status"] == "UNSET" and listed[0]["duration_ms"] > 0
    tree = client.get(f"/traces/{ids[-1]}").json()
    assert tree["trace_id"] == ids[-1]
    (root,) = tree["spans"]
    (query,) = root["children"]
    assert query["name"] == "query" and query["parent_id"] == root["span_id"]
    children = [c["name"] for c in query["children"]]
    assert children == ["retrieval", "prompt", "chat extractive"]
    assert query["start_ns"] <= query["children"][0]["start_ns"] <= query["end_ns"]
    assert query["status"] == {"code": "UNSET", "description": None}
    evicted = client.get(f"/traces/{ids[0]}")
    assert evicted.status_code == 404 and "keep_recent" in evicted.json()["detail"]
    assert client.get("/traces/not-a-trace-id").status_code == 422


def test_a_stream_is_traced_with_its_time_to_first_chunk(
    write_config: ConfigWriter, serve: Any
) -> None:
    _rag, client = serve(traced_app(write_config, exporter="none"))
    response = client.post("/query", json={**QUESTION, "stream": True})
    assert response.status_code == 200 and "event: answer" in response.text
    tree = client.get(f"/traces/{response.headers['x-trace-id']}").json()
    (root,) = tree["spans"]
    (query,) = root["children"]
    assert query["attributes"]["llmops.streamed"] is True
    chat = next(c for c in query["children"] if c["name"] == "chat extractive")
    assert chat["attributes"]["gen_ai.request.stream"] is True
    assert chat["attributes"]["gen_ai.response.time_to_first_chunk"] > 0
    assert chat["end_ns"] <= query["end_ns"] <= root["end_ns"]


def test_a_failed_query_is_an_error_span(write_config: ConfigWriter, serve: Any) -> None:
    _rag, client = serve(traced_app(write_config, exporter="none"))
    response = client.post("/query", json={**QUESTION, "filters": {"page": {"$in": []}}})
    assert response.status_code == 400
    (root,) = client.get(f"/traces/{response.headers['x-trace-id']}").json()["spans"]
    assert root["attributes"]["http.response.status_code"] == 400
    (query,) = root["children"]
    assert query["status"]["code"] == "ERROR"
    assert query["attributes"]["error.type"] == "InvalidRequest"


def test_ingestion_is_a_trace_with_a_span_per_embedded_batch(
    write_config: ConfigWriter, serve: Any
) -> None:
    rag, _ = serve(traced_app(write_config, exporter="none"))
    recent = rag.components.tracing.recent
    assert recent is not None
    (summary,) = recent.recent(10)
    tree = recent.tree(summary["trace_id"])
    assert tree is not None
    (ingest,) = tree["spans"]
    assert ingest["name"] == "ingest"
    assert ingest["attributes"]["llmops.ingest.added"] == 4
    batches = [c for c in ingest["children"] if c["name"] == "embeddings hashing"]
    assert (
        batches
        and sum(c["attributes"]["llmops.embed.batch_size"] for c in batches)
        == (ingest["attributes"]["llmops.ingest.chunks_embedded"])
    )


def test_an_eval_run_is_one_trace_with_a_span_per_sample(
    write_config: ConfigWriter, tmp_path: Path
) -> None:
    with HttpCollector() as collector:
        tracing = {"enabled": True, "exporter": "otlp-http", "endpoint": collector.endpoint}
        app = write_config(embedder=HASHING, monitoring={"tracing": tracing})
        suite = write_suite(tmp_path, app, metrics=["hit@2"], gates=[])
        run_suite(suite, track=False)
        spans = collector.wait_for(1)
    names = by_name(spans)
    run = names["eval"]
    assert run.parent_id is None and run.attributes["llmops.eval.suite"] == "tiny"
    sample_spans = [s for s in spans if s.name == "eval.sample"]
    assert len(sample_spans) == run.attributes["llmops.eval.samples"] + 1  # + the warm-up
    assert {s.trace_id for s in spans} == {run.trace_id}
    queries = [s for s in spans if s.name == "retrieval"]
    assert {s.parent_id for s in queries} <= {s.span_id for s in sample_spans}
    assert names["ingest"].parent_id == run.span_id


def test_retries_and_fallbacks_show_as_spans_and_events(
    write_config: ConfigWriter, serve: Any
) -> None:
    with socket.socket() as probe:  # a port nobody listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    primary = {
        "type": "openai_compat",
        "base_url": f"http://127.0.0.1:{port}/v1",
        "model": "gone-model",
        "max_retries": 1,
        "backoff_s": 0.01,
    }
    config = write_config(
        embedder=HASHING,
        generator=primary,
        fallbacks=[{"type": "extractive"}],
        monitoring={"tracing": {"enabled": True, "exporter": "none"}},
    )
    _rag, client = serve(config)
    response = client.post("/query", json=QUESTION)
    assert response.status_code == 200 and response.json()["generator"] == "extractive"
    (root,) = client.get(f"/traces/{response.headers['x-trace-id']}").json()["spans"]
    (query,) = root["children"]
    failed, answered = [c for c in query["children"] if c["name"].startswith("chat ")]
    assert failed["name"] == "chat gone-model" and failed["status"]["code"] == "ERROR"
    assert failed["attributes"]["gen_ai.provider.name"] == "openai_compat"
    assert failed["attributes"]["llmops.fallback.position"] == 0
    assert failed["attributes"]["error.type"] == "BackendError"
    assert [e["name"] for e in failed["events"]] == ["retry", "exception"]
    assert failed["events"][0]["attributes"]["llmops.attempt"] == 1
    assert answered["name"] == "chat extractive" and answered["status"]["code"] == "UNSET"
    assert answered["attributes"]["llmops.fallback.position"] == 1
    assert failed["end_ns"] <= answered["start_ns"]
