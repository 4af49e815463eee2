"""Deferred spans (``llmops.tracing.deferred``): what the request path records cheaply reaches
the SDK's processors as the span it would have made at once — same ids (the ones handed out
in headers), parents, names, attributes, events, status and times — with the SDK's sampling
decisions, and the replay thread delivers without being asked."""

from __future__ import annotations

import time

import pytest
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from llmops import tracing
from llmops.tracing.deferred import DeferredTracer, PresetIds, Replay


def deferred(ratio: float) -> tuple[DeferredTracer, Replay, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    sampler = ParentBased(TraceIdRatioBased(ratio))
    ids = PresetIds()
    provider = TracerProvider(sampler=sampler, id_generator=ids)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    replay = Replay(provider.get_tracer("test"), ids)
    return DeferredTracer(sampler, replay), replay, exporter


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def test_a_replayed_trace_is_the_one_the_request_recorded() -> None:
    tracer, replay, exporter = deferred(1.0)
    with tracing.span(tracer, "GET", {"url.path": "/query"}) as root:
        root.update_name("GET /query")
        with tracing.span(tracer, "retrieval", {"n": 1}) as child:
            child.set_attributes({"llmops.hits": 5, "skipped": "x"})
            trace.get_current_span().add_event("retry", {"llmops.attempt": 2})
        with pytest.raises(ValueError), tracing.span(tracer, "chat"):
            raise ValueError("backend said no")
    assert exporter.get_finished_spans() == ()  # nothing made on the request path
    replay.drain()
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"GET /query", "retrieval", "chat"}
    made, retrieval, chat = spans["GET /query"], spans["retrieval"], spans["chat"]
    assert made.context is not None and retrieval.context is not None
    assert (made.context.trace_id, made.context.span_id) == (
        root.get_span_context().trace_id,
        root.get_span_context().span_id,
    )
    assert made.parent is None
    assert retrieval.parent is not None and retrieval.parent.span_id == made.context.span_id
    assert retrieval.context.span_id == child.get_span_context().span_id
    assert dict(retrieval.attributes or {}) == {"n": 1, "llmops.hits": 5, "skipped": "x"}
    (event,) = retrieval.events
    assert event.name == "retry" and dict(event.attributes or {}) == {"llmops.attempt": 2}
    assert chat.status.status_code == trace.StatusCode.ERROR
    assert (chat.attributes or {})[tracing.ERROR_TYPE] == "ValueError"
    (exception,) = chat.events
    assert (exception.attributes or {})["exception.type"] == "ValueError"
    assert "backend said no" in str((exception.attributes or {})["exception.stacktrace"])
    assert made.start_time is not None and made.end_time is not None
    assert made.start_time <= retrieval.start_time <= retrieval.end_time <= made.end_time  # type: ignore[operator]


def test_sampling_is_the_sdks_and_children_follow_their_root() -> None:
    tracer, replay, exporter = deferred(0.5)
    handed_out = set()
    for _ in range(200):
        with tracing.span(tracer, "root") as root, tracing.span(tracer, "child"):
            if root.get_span_context().trace_flags.sampled:
                handed_out.add(root.get_span_context().trace_id)
    replay.drain()
    by_trace: dict[int, list[str]] = {}
    for span in exporter.get_finished_spans():
        assert span.context is not None
        by_trace.setdefault(span.context.trace_id, []).append(span.name)
    assert 40 < len(handed_out) < 160
    assert set(by_trace) == handed_out  # the SDK sampled exactly the traces the tracer did
    assert all(sorted(names) == ["child", "root"] for names in by_trace.values())


def test_a_callers_traceparent_is_continued_as_a_remote_parent() -> None:
    tracer, replay, exporter = deferred(1.0)
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracing.active(tracer.start_span("POST", context=extract({"traceparent": caller}))):
        pass
    replay.drain()
    (span,) = exporter.get_finished_spans()
    assert span.context is not None and span.parent is not None
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent.span_id == 0xB7AD6B7169203331 and span.parent.is_remote


def test_draining_under_another_span_keeps_roots_roots() -> None:
    tracer, replay, exporter = deferred(1.0)
    with tracing.span(tracer, "first"):
        pass
    with tracing.span(tracer, "reading /traces"):
        replay.drain()
    replay.drain()
    spans = by_name(exporter.get_finished_spans())
    assert spans["first"].parent is None


def test_the_replay_thread_delivers_without_a_drain() -> None:
    tracer, replay, exporter = deferred(1.0)
    with tracing.span(tracer, "work"):
        pass
    deadline = time.monotonic() + 10
    while not exporter.get_finished_spans() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [s.name for s in exporter.get_finished_spans()] == ["work"]
    thread = replay._thread  # this replay's own (other apps of the session may have theirs)
    assert thread is not None and thread.is_alive() and thread.name == "llmops-span-replay"
    replay.stop()
    assert not thread.is_alive()
    with tracing.span(tracer, "after shutdown"):
        pass
    replay.drain()
    assert [s.name for s in exporter.get_finished_spans()] == ["work"]  # nothing kept after
