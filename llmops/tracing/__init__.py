"""OpenTelemetry spans for queries, ingestion, eval runs and predictions; a no-op when off.

Every layer that records spans takes a ``Tracer`` (the OpenTelemetry API's): off (the
default), it is the API's ``NoOpTracer`` and the SDK is never imported; on, it comes from a
``TracerProvider`` of the app's own (not the process-global one, so two apps in one process
keep their own exporters and sampling), built by ``llmops.tracing.sdk``. Attribute names follow
the OpenTelemetry GenAI semantic conventions where they apply (docs/tracing.md lists them).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import AbstractContextManager, aclosing
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from opentelemetry import context, trace
from opentelemetry.trace import Span, Tracer
from opentelemetry.util.types import AttributeValue

from llmops.config.monitoring import TracingConfig
from llmops.deps import require

if TYPE_CHECKING:
    from llmops.tracing.recent import RecentTraces

# GenAI semantic conventions (opentelemetry-semantic-conventions 0.66b2, gen_ai_attributes)
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_STREAM = "gen_ai.request.stream"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
DATA_SOURCE = "gen_ai.data_source.id"
PROMPT_NAME = "gen_ai.prompt.name"
ERROR_TYPE = "error.type"

T = TypeVar("T")
Attributes = dict[str, AttributeValue]

NOOP = trace.NoOpTracer()
"""The tracer of an app with tracing off: spans cost a context switch and record nothing."""


class Provider(Protocol):
    """What ``Tracing`` needs of the SDK's ``TracerProvider``."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool: ...

    def shutdown(self) -> None: ...


class Pending(Protocol):
    """Spans ended on the request path and not yet handed to the SDK
    (``llmops.tracing.deferred.Replay``)."""

    def drain(self) -> None: ...

    def stop(self) -> None: ...


class Tracing:
    """An app's tracer, with what it owns: the SDK provider (None when off), the spans not yet
    handed to it, and the recent traces kept in memory for ``GET /traces`` (None when off or
    ``keep_recent: 0``)."""

    def __init__(
        self,
        tracer: Tracer = NOOP,
        provider: Provider | None = None,
        recent: RecentTraces | None = None,
        pending: Pending | None = None,
    ) -> None:
        self.tracer = tracer
        self.provider = provider
        self.pending = pending
        self._recent = recent

    @classmethod
    def from_config(cls, config: TracingConfig, service_name: str) -> Tracing:
        """Tracing as ``config`` says; ``service_name`` unless the config names one."""
        if not config.enabled:
            return cls()
        require("opentelemetry.sdk.trace", "tracing")
        from llmops.tracing.sdk import make_tracing  # the SDK only when tracing is on

        return make_tracing(config, config.service_name or service_name)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    @property
    def recent(self) -> RecentTraces | None:
        """The recent traces, holding every span ended so far."""
        if self.pending is not None:
            self.pending.drain()
        return self._recent

    def flush(self) -> None:
        """Export the spans still pending or buffered (an app closing; the SDK's exit hook
        flushes its own buffer when the process ends)."""
        if self.pending is not None:
            self.pending.drain()
        if self.provider is not None:
            self.provider.force_flush()

    def shutdown(self) -> None:
        """Flush and stop the threads; the tracer records nothing after this."""
        if self.pending is not None:
            self.pending.stop()
        if self.provider is not None:
            self.provider.shutdown()


def trace_id() -> str | None:
    """The current trace's id (32 hex digits), or None outside a recorded (sampled) trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.trace_flags.sampled else None


def traceparent(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span``; None unless it is recorded (sampled)."""
    context = span.get_span_context()
    if not context.trace_flags.sampled:
        return None
    flags = int(context.trace_flags)
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"


def set_attributes(span: Span, attributes: Mapping[str, Any]) -> None:
    """Set the attributes that have a value (OpenTelemetry has no null attribute)."""
    if span.is_recording():
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def current(span: Span) -> AbstractContextManager[Span]:
    """``span`` as the current span for a block, leaving its end and failures to the caller."""
    return trace.use_span(span, record_exception=False, set_status_on_exception=False)


class _Active:
    """``active``'s context manager: a plain class, since a request makes one per span (a
    generator-based one, as the API's ``start_as_current_span``, costs several times more)."""

    __slots__ = ("_token", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._token: object = None

    def __enter__(self) -> Span:
        # an invalid span (the no-op tracer's) has nothing for children to continue; a valid
        # unsampled one must be current, so that its children are not sampled on their own
        if self.span.get_span_context().is_valid:
            self._token = context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            context.detach(self._token)  # type: ignore[arg-type]
        if isinstance(exc, Exception):
            error(self.span, exc)
        self.span.end()


def active(span: Span) -> AbstractContextManager[Span]:
    """``span`` current for the block, failed when the block raises, ended after it."""
    return _Active(span)


def span(
    tracer: Tracer, name: str, attributes: Attributes | None = None
) -> AbstractContextManager[Span]:
    """A new span of ``tracer``, ``active`` for the block (``start_as_current_span`` for the
    request path, at a fraction of its cost)."""
    return _Active(tracer.start_span(name, attributes=attributes))


async def within(span: Span, pieces: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    """``pieces`` with ``span`` current while each one is produced, never across a ``yield``
    (where the consumer's code runs, in its own context); the span fails with the stream and
    ends with it (closing the stream early ends it too)."""
    try:
        async with aclosing(pieces):
            while True:
                with current(span):
                    try:
                        item = await anext(pieces)
                    except StopAsyncIteration:
                        return
                yield item
    except Exception as exc:
        error(span, exc)
        raise
    finally:
        span.end()


def error(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed by ``exc`` (its type in ``error.type``, the exception as an event)."""
    span.set_attribute(ERROR_TYPE, type(exc).__name__)
    span.record_exception(exc)
    span.set_status(trace.StatusCode.ERROR, str(exc)[:500])
