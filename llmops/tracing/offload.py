"""Exporting spans from a child process, off the app's GIL.

The SDK's ``BatchSpanProcessor`` hands each batch to ``ProcessSpanExporter``, which sends the
spans' plain fields down a pipe (pickled: about a tenth of what encoding them as OTLP costs)
and waits, not holding the GIL, for the child's answer. The child (``python -m
llmops.tracing.offload``) rebuilds them as SDK spans and exports them with the real OTLP
exporter, so the protobuf encoding and the HTTP or gRPC call, most of what tracing costs,
run on another core instead of competing with requests for the interpreter.

The pipe carries frames, each a 4-byte length and a pickled ``(kind, payload)``: first
``("setup", ExporterSettings)``, then ``("spans", [fields, ...])``, each answered by one
line on the child's stdout (``ok`` or ``failed``: the OTLP exporter's result).
"""

from __future__ import annotations

import logging
import os
import pickle
import selectors
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import IO, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

log = logging.getLogger(__name__)
_LENGTH = struct.Struct("!I")
Context = tuple[int, int, bool, int, str]


@dataclass(frozen=True)
class ExporterSettings:
    """What the child needs to make the OTLP exporter (headers may hold a token: they travel
    down the pipe, never in the child's arguments or environment)."""

    exporter: str
    endpoint: str
    headers: dict[str, str]
    timeout_s: float
    resource: dict[str, Any]


# span <-> plain fields ----------------------------------------------------------------------
def _context(context: SpanContext | None) -> Context | None:
    if context is None:
        return None
    state = context.trace_state.to_header()
    return context.trace_id, context.span_id, context.is_remote, int(context.trace_flags), state


def _span_context(fields: Context | None) -> SpanContext | None:
    if fields is None:
        return None
    trace_id, span_id, remote, flags, state = fields
    traced = TraceState.from_header([state]) if state else None
    return SpanContext(trace_id, span_id, remote, TraceFlags(flags), traced)


def span_fields(span: ReadableSpan) -> tuple[Any, ...]:
    """``span`` as a tuple of plain values (picklable, cheap to make)."""
    scope = span.instrumentation_scope
    return (
        span.name,
        _context(span.context),
        _context(span.parent),
        span.kind.value,
        span.start_time,
        span.end_time,
        dict(span.attributes or {}),
        [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events],
        [(_context(link.context), dict(link.attributes or {})) for link in span.links],
        span.status.status_code.value,
        span.status.description,
        (scope.name, scope.version, scope.schema_url) if scope is not None else None,
    )


def readable_span(fields: tuple[Any, ...], resource: Resource) -> ReadableSpan:
    """The SDK span that ``span_fields`` took apart."""
    name, context, parent, kind, start, end, attributes, events, links, code, why, scope = fields
    return ReadableSpan(
        name=name,
        context=_span_context(context),
        parent=_span_context(parent),
        resource=resource,
        attributes=attributes,
        events=[Event(event, attrs, timestamp) for event, timestamp, attrs in events],
        links=[Link(_span_context(c), attrs) for c, attrs in links],  # type: ignore[arg-type]
        kind=SpanKind(kind),
        status=Status(StatusCode(code), why),
        start_time=start,
        end_time=end,
        instrumentation_scope=InstrumentationScope(*scope) if scope else None,
    )


def _write(stream: IO[bytes], kind: str, payload: Any) -> None:
    data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> tuple[str, Any] | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    kind, payload = pickle.loads(stream.read(size))
    return kind, payload


# the app's side -----------------------------------------------------------------------------
class ProcessSpanExporter(SpanExporter):
    """A ``SpanExporter`` whose batches the child process exports; started at the first batch
    (again after it died, or in a forked process)."""

    def __init__(self, settings: ExporterSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()  # one batch at a time on the pipe
        self._child: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        fields = [span_fields(span) for span in spans]
        with self._lock:
            try:
                child = self._started()
                assert child.stdin is not None and child.stdout is not None
                _write(child.stdin, "spans", fields)
                answer = _answer(child.stdout, self.settings.timeout_s + 5)
            except OSError as exc:
                answer = f"the export process is gone ({exc})"
            if answer in ("ok", "failed"):
                return SpanExportResult.SUCCESS if answer == "ok" else SpanExportResult.FAILURE
            log.warning("tracing: %d spans dropped: %s", len(spans), answer)
            self._stop(kill=True)
            return SpanExportResult.FAILURE

    def _started(self) -> subprocess.Popen[bytes]:
        if self._pid != os.getpid():  # forked: the parent's child and pipe are not ours
            self._child, self._pid = None, os.getpid()
        if self._child is None or self._child.poll() is not None:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "llmops.tracing.offload"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert self._child.stdin is not None
            _write(self._child.stdin, "setup", self.settings)
        return self._child

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # each batch is exported before ``export`` returns

    def shutdown(self) -> None:
        with self._lock:
            self._stop(kill=False)

    def _stop(self, kill: bool) -> None:
        child, self._child = self._child, None
        if child is None or self._pid != os.getpid():
            return
        if kill:
            child.kill()
        else:
            assert child.stdin is not None
            with suppress(OSError):
                child.stdin.close()  # the child exits at the end of its input
        try:
            child.wait(timeout=self.settings.timeout_s + 5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _answer(replies: IO[bytes], timeout_s: float) -> str:
    """The child's answer to a batch: ``ok``, ``failed``, or what went wrong instead."""
    with selectors.DefaultSelector() as selector:  # select() fails on descriptors past 1023
        selector.register(replies, selectors.EVENT_READ)
        ready = selector.select(timeout_s)
    if not ready:
        return f"the export process did not answer within {timeout_s:g}s"
    line = replies.readline().decode().strip()
    return line or "the export process exited"


# the child's side ---------------------------------------------------------------------------
def serve(source: IO[bytes], replies: IO[bytes]) -> None:
    """Export the spans of each frame read from ``source`` until it closes."""
    from llmops.tracing.sdk import otlp_exporter

    frame = _read(source)
    if frame is None or frame[0] != "setup":
        return
    settings: ExporterSettings = frame[1]
    exporter = otlp_exporter(
        settings.exporter, settings.endpoint, settings.headers, settings.timeout_s
    )
    resource = Resource(settings.resource)
    try:
        while (frame := _read(source)) is not None:
            spans = [readable_span(fields, resource) for fields in frame[1]]
            result = exporter.export(spans)
            replies.write(b"ok\n" if result is SpanExportResult.SUCCESS else b"failed\n")
            replies.flush()
    finally:
        exporter.shutdown()


def main() -> None:
    """The child: answers go to the stdout it was given; anything a library prints goes to
    stderr, so it cannot garble an answer."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
