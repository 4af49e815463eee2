"""Spans exported from a child process (``llmops.tracing.offload``): a span taken apart and
rebuilt encodes to the same OTLP bytes; the collector receives every span of every batch over
HTTP and gRPC, and the exporter's result comes back; an export process that died is replaced
at the next batch; with ``export_process: false`` the app's own thread exports, as the SDK
does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmops import RAG
from llmops.server import create_app
from llmops.testing.otlp import GrpcCollector, HttpCollector
from llmops.tracing.offload import (
    ExporterSettings,
    ProcessSpanExporter,
    readable_span,
    span_fields,
)
from tests.conftest import HASHING, ConfigWriter

RESOURCE = Resource.create({"service.name": "offload-test"})


def finished_spans() -> list[ReadableSpan]:
    """A small trace: a server span, a child with an event and a failed grandchild."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("llmops", "1.0")
    with tracer.start_as_current_span("POST /query", kind=SpanKind.SERVER) as server:
        server.set_attribute("http.route", "/query")
        with tracer.start_as_current_span("retrieval", attributes={"llmops.hits": 3}) as child:
            child.add_event("retry", {"llmops.attempt": 1, "llmops.reason": "timeout"})
            child.set_attribute("llmops.score.max", 0.75)
            try:
                with tracer.start_as_current_span("chat", attributes={"tags": ["a", "b"]}):
                    raise ValueError("backend down")
            except ValueError:
                pass
    return list(memory.get_finished_spans())


def test_a_span_rebuilt_from_its_fields_encodes_to_the_same_bytes() -> None:
    spans = finished_spans()
    rebuilt = [readable_span(span_fields(s), RESOURCE) for s in spans]
    assert [s.name for s in rebuilt] == ["chat", "retrieval", "POST /query"]
    assert rebuilt[0].status.status_code is StatusCode.ERROR
    original = encode_spans(spans).SerializeToString(deterministic=True)
    assert encode_spans(rebuilt).SerializeToString(deterministic=True) == original


def settings(collector: HttpCollector | GrpcCollector) -> ExporterSettings:
    kind = "otlp-http" if isinstance(collector, HttpCollector) else "otlp-grpc"
    return ExporterSettings(
        kind, collector.endpoint, {"x-token": "t0k"}, 5.0, dict(RESOURCE.attributes)
    )


@pytest.mark.parametrize("collector_type", [HttpCollector, GrpcCollector])
def test_the_child_exports_every_span_and_answers_with_the_result(
    collector_type: type[HttpCollector] | type[GrpcCollector],
) -> None:
    spans = finished_spans()
    with collector_type() as collector:
        exporter = ProcessSpanExporter(settings(collector))
        try:
            assert exporter.export(spans) is SpanExportResult.SUCCESS
            assert exporter.export(spans[:1]) is SpanExportResult.SUCCESS
            received = list(collector.spans)  # exported before export() returned
        finally:
            exporter.shutdown()
    assert [s.name for s in received] == [s.name for s in spans] + [spans[0].name]
    assert collector.headers["x-token"] == "t0k"
    assert received[0].resource["service.name"] == "offload-test"
    retrieval = next(s for s in received if s.name == "retrieval")
    assert retrieval.attributes == {"llmops.hits": 3, "llmops.score.max": 0.75}
    assert retrieval.events == ("retry",)


def test_a_failed_export_is_reported_and_a_dead_child_replaced() -> None:
    spans = finished_spans()
    with HttpCollector() as collector:
        exporter = ProcessSpanExporter(settings(collector))
        try:
            assert exporter.export(spans) is SpanExportResult.SUCCESS
            child = exporter._child
            assert child is not None
            child.kill()
            child.wait()
            assert exporter.export(spans) is SpanExportResult.SUCCESS  # a new child
            assert exporter._child is not child
            endpoint = collector.endpoint
        finally:
            exporter.shutdown()
    assert len(collector.spans) == 2 * len(spans)
    gone = ProcessSpanExporter(ExporterSettings("otlp-http", endpoint, {}, 1.0, {}))
    try:  # the collector is closed: the OTLP exporter fails, and says so
        assert gone.export(spans) is SpanExportResult.FAILURE
    finally:
        gone.shutdown()


@pytest.fixture
def traced(write_config: ConfigWriter) -> Iterator[Any]:
    apps: list[tuple[RAG, TestClient]] = []

    def start(**tracing: Any) -> tuple[RAG, TestClient]:
        config = write_config(
            embedder=HASHING,
            sparse={"type": "bm25"},
            monitoring={"tracing": {"enabled": True, **tracing}},
        )
        rag = RAG.from_config(config)
        rag.ingest()
        client = TestClient(create_app(rag)).__enter__()
        apps.append((rag, client))
        return rag, client

    yield start
    for rag, client in apps:
        client.__exit__(None, None, None)
        rag.components.tracing.shutdown()


@pytest.mark.parametrize("export_process", [True, False])
def test_every_span_of_every_query_reaches_the_collector(traced: Any, export_process: bool) -> None:
    with HttpCollector() as collector:
        rag, client = traced(
            exporter="otlp-http", endpoint=collector.endpoint, export_process=export_process
        )
        provider: Any = rag.components.tracing.provider
        (batches, _recent) = provider._active_span_processor._span_processors
        ids = []
        for _ in range(5):
            response = client.post("/query", json={"question": "How do I restore a backup?"})
            ids.append(response.headers["x-trace-id"])
        rag.components.tracing.flush()
        spans = list(collector.spans)
    assert isinstance(batches.span_exporter, ProcessSpanExporter) is export_process
    per_trace = {i: [s.name for s in spans if s.trace_id == i] for i in ids}
    assert all(len(names) == 9 and "POST /query" in names for names in per_trace.values())
