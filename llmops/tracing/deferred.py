"""Spans that cost the request almost nothing: recorded as plain records while the work runs,
made into the SDK's spans off the request path.

The SDK's span is the expensive part of tracing a request (bench/tracing.py: about 20 µs each
before attributes; 0.4 ms of the event loop's CPU for the 9 spans of one ``/query``), and what
it does at start (sampling, ids, attribute checks, processors) has no consequence until the
span is exported. So the app's tracer hands out ``RecordedSpan``s: the sampling decision and
the ids are made at start, exactly as the SDK would make them (its own sampler; ids from the
provider's generator), so ``traceparent``, ``X-Trace-ID`` and the request log carry the final
ids; names, attributes, events, status and times are kept as given. When a span ends, its
record is queued, and the ``Replay`` thread makes each record into an SDK span with the same
ids and times (``start_span(start_time=…)``, ``end(end_time=…)``), a batch a few times a
second, yielding the interpreter between traces. Everything after that — limits, attribute
validation, the processors (OTLP export, the recent traces) — is the SDK's, unchanged.

The CPU is spent all the same, later and on another thread; ``Tracing.flush`` replays what is
queued before it flushes the SDK, and reading the recent traces replays first too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from random import getrandbits
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
)
from opentelemetry.util.types import Attributes, AttributeValue

# the trace flags the SDK gives a span of its random-id generator, sampled or not
_SAMPLED = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_UNSAMPLED = TraceFlags(TraceFlags.RANDOM_TRACE_ID)
REPLAY_INTERVAL_S = 0.25
WAKE_AT = 4_096  # queued spans that wake the replay thread before its interval is up
YIELD_EVERY = 16  # spans replayed between two pauses that let the request threads run
_ROOT = Context()  # no parent


class PresetIds(IdGenerator):
    """The provider's id generator: random ids, except the one ``preset`` for the span being
    replayed on this thread (so the SDK's span gets the id the request already handed out)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._preset = threading.local()

    def preset(self, ids: tuple[int, int] | None) -> None:
        """``(trace id, span id)`` for the next span this thread makes; None: random again."""
        self._preset.ids = ids

    def generate_trace_id(self) -> int:
        ids = getattr(self._preset, "ids", None)
        return ids[0] if ids else self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        ids = getattr(self._preset, "ids", None)
        return ids[1] if ids else self._random.generate_span_id()

    def is_trace_id_random(self) -> bool:
        return True


@dataclass
class _Event:
    name: str
    attributes: Attributes
    timestamp: int
    exception: BaseException | None = None


class RecordedSpan(Span):
    """A sampled span as plain data until the replay makes it an SDK span."""

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Attributes,
        links: Sequence[Link],
        replay: Replay,
    ) -> None:
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.attributes: dict[str, AttributeValue] = dict(attributes or {})
        self.links = links
        self.events: list[_Event] = []
        self.status: tuple[Status | StatusCode, str | None] | None = None
        self.start = time.time_ns()
        self.end_time: int | None = None
        self._replay = replay

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self.attributes.update(attributes)

    def update_name(self, name: str) -> None:
        self.name = name

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        self.events.append(_Event(name, attributes, timestamp or time.time_ns()))

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self.events.append(_Event("exception", attributes, timestamp or time.time_ns(), exception))

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self.status = (status, description)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is None:
            self.end_time = end_time or time.time_ns()
            self._replay.queue(self)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end()


class DeferredTracer(Tracer):
    """The app's tracer when tracing is on: sampling and ids as the SDK's tracer would decide
    them (ParentBased sampling: a child follows its parent, a new trace asks the sampler),
    the span itself a ``RecordedSpan`` that ``replay`` hands to the SDK later."""

    def __init__(self, sampler: Sampler, replay: Replay) -> None:
        self.sampler = sampler
        self.replay = replay

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        parent = trace.get_current_span(context).get_span_context()
        links = links or ()
        state: TraceState | None
        if parent.is_valid:
            trace_id, state = parent.trace_id, parent.trace_state
            sampled = parent.trace_flags.sampled
        else:
            trace_id = getrandbits(128) or 1  # random, as the SDK's; never the invalid 0
            result = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
            state, sampled = result.trace_state, result.decision.is_sampled()
        span_id = getrandbits(64) or 1  # never the invalid id 0
        if not sampled:
            return NonRecordingSpan(SpanContext(trace_id, span_id, False, _UNSAMPLED, state))
        ids = SpanContext(trace_id, span_id, False, _SAMPLED, state)
        span = RecordedSpan(
            name, ids, parent if parent.is_valid else None, kind, attributes, links, self.replay
        )
        if start_time is not None:
            span.start = start_time
        return span

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Context | None = None, **options: Any
    ) -> Iterator[Span]:
        span = self.start_span(name, context, **options)
        with trace.use_span(span, end_on_exit=True):
            yield span


class Replay:
    """Ended ``RecordedSpan``s, made into SDK spans by ``sdk_tracer`` on a daemon thread (and
    on ``drain``); started on first use."""

    def __init__(self, sdk_tracer: Tracer, ids: PresetIds) -> None:
        self.sdk_tracer = sdk_tracer
        self.ids = ids
        self._queued: deque[RecordedSpan] = deque()
        self._drain = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def queue(self, span: RecordedSpan) -> None:
        if self._stopped:
            return  # the app's tracing is shut down: nothing is recorded any more
        self._queued.append(span)
        if self._thread is None:
            self._start_thread()
        if len(self._queued) >= WAKE_AT:
            self._wake.set()

    def drain(self) -> None:
        """Make every queued span an SDK span now (in the order they ended)."""
        with self._drain:
            done = 0
            while self._queued:
                self._make(self._queued.popleft())
                done += 1
                if done % YIELD_EVERY == 0:
                    time.sleep(0)  # let a waiting request thread have the interpreter

    def stop(self) -> None:
        """Replay what is queued and end the thread."""
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.drain()

    def _start_thread(self) -> None:
        with self._start:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name="llmops-span-replay", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(REPLAY_INTERVAL_S)
            self._wake.clear()
            self.drain()

    def _make(self, record: RecordedSpan) -> None:
        ids = record.context
        # the parent as it was at start (a caller's remote span stays remote); a root gets an
        # empty context, not whatever is current on the thread that drains
        parent = _ROOT
        if record.parent is not None:
            parent = trace.set_span_in_context(NonRecordingSpan(record.parent), _ROOT)
        self.ids.preset((ids.trace_id, ids.span_id))
        try:
            span = self.sdk_tracer.start_span(
                record.name,
                context=parent,
                kind=record.kind,
                attributes=record.attributes,
                links=record.links,
                start_time=record.start,
            )
        finally:
            self.ids.preset(None)
        for event in record.events:
            if event.exception is not None:
                span.record_exception(event.exception, event.attributes, event.timestamp)
            else:
                span.add_event(event.name, event.attributes, event.timestamp)
        if record.status is not None:
            span.set_status(*record.status)
        span.end(end_time=record.end_time)
