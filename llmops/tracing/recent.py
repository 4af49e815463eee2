"""The spans of the last N traces, in memory, for ``GET /traces`` (the console's waterfall).

A span processor: the SDK hands it each sampled span as it ends. Traces are kept in arrival
order of their first finished span; the oldest is dropped past ``keep`` traces, and a trace
keeps at most ``MAX_SPANS`` spans (an eval run's trace holds one query per sample)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import format_span_id, format_trace_id

MAX_SPANS = 2_000


class RecentTraces(SpanProcessor):
    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._traces: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass  # only finished spans are kept

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None:
            return
        key = span.context.trace_id
        with self._lock:
            spans = self._traces.get(key)
            if spans is None:
                spans = self._traces[key] = []
                if len(self._traces) > self.keep:
                    self._traces.popitem(last=False)
            if len(spans) < MAX_SPANS:
                spans.append(span)

    def shutdown(self) -> None:
        with self._lock:
            self._traces.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """Summaries of the latest ``limit`` traces, newest first."""
        with self._lock:
            latest = list(self._traces.values())[-limit:] if limit > 0 else []
        return [_summary(spans) for spans in reversed(latest)]

    def tree(self, trace_id: str) -> dict[str, Any] | None:
        """The spans of one trace (32 hex digits) as a tree; None when it is not kept."""
        try:
            key = int(trace_id, 16)
        except ValueError:
            return None
        with self._lock:
            spans = list(self._traces.get(key, ()))
        if not spans:
            return None
        return {"trace_id": format_trace_id(key), "spans": _tree(spans)}


def _summary(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    roots = _roots(spans)
    root = min(roots or spans, key=lambda s: s.start_time or 0)
    start = min(s.start_time or 0 for s in spans)
    end = max(s.end_time or 0 for s in spans)
    assert root.context is not None
    return {
        "trace_id": format_trace_id(root.context.trace_id),
        "name": root.name,
        "start_ns": start,
        "end_ns": end,
        "duration_ms": round((end - start) / 1e6, 3),
        "spans": len(spans),
        "status": root.status.status_code.name,
    }


def _roots(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """Spans whose parent is not in the trace here (none, or a caller's remote span)."""
    ids = {s.context.span_id for s in spans if s.context is not None}
    return [s for s in spans if s.parent is None or s.parent.span_id not in ids]


def _tree(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    nodes = {s.context.span_id: _node(s) for s in spans if s.context is not None}
    roots: list[dict[str, Any]] = []
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        assert span.context is not None
        node = nodes[span.context.span_id]
        parent = nodes.get(span.parent.span_id) if span.parent is not None else None
        (parent["children"] if parent is not None else roots).append(node)
    return roots


def _node(span: ReadableSpan) -> dict[str, Any]:
    assert span.context is not None
    start, end = span.start_time or 0, span.end_time or 0
    return {
        "name": span.name,
        "span_id": format_span_id(span.context.span_id),
        "parent_id": format_span_id(span.parent.span_id) if span.parent is not None else None,
        "kind": span.kind.name,
        "start_ns": start,
        "end_ns": end,
        "duration_ms": round((end - start) / 1e6, 3),
        "attributes": dict(span.attributes or {}),
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "events": [
            {"name": e.name, "time_ns": e.timestamp, "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
        "children": [],
    }
