"""``tracing.span`` / ``tracing.active``, the request path's span context manager: a child
follows its parent's sampling decision (never a trace cut in pieces), a failing block fails
and ends its span, and the no-op tracer of an app with tracing off records nothing."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from llmops import tracing


def sdk(ratio: float) -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_children_follow_their_roots_sampling() -> None:
    tracer, exporter = sdk(0.5)
    for _ in range(200):
        with (
            tracing.span(tracer, "root"),
            tracing.span(tracer, "child", {"n": 1}),
            tracing.span(tracer, "grandchild"),
        ):
            pass
    ended = exporter.get_finished_spans()
    by_trace: dict[int, list[str]] = {}
    for span in ended:
        assert span.context is not None
        by_trace.setdefault(span.context.trace_id, []).append(span.name)
    assert 40 < len(by_trace) < 160  # about half the roots were sampled
    assert all(sorted(names) == ["child", "grandchild", "root"] for names in by_trace.values())
    child = next(s for s in ended if s.name == "child")
    assert child.attributes == {"n": 1}


def test_a_failing_block_fails_and_ends_its_span() -> None:
    tracer, exporter = sdk(1.0)
    with pytest.raises(ValueError), tracing.span(tracer, "work"):
        raise ValueError("bad input")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.attributes is not None and span.attributes[tracing.ERROR_TYPE] == "ValueError"
    assert [e.name for e in span.events] == ["exception"]
    assert trace.get_current_span() is trace.INVALID_SPAN  # the context is restored


def test_the_no_op_tracer_records_nothing() -> None:
    with tracing.span(tracing.NOOP, "off", {"a": 1}) as span:
        assert not span.is_recording()
        assert trace.get_current_span() is trace.INVALID_SPAN
