"""The OpenTelemetry SDK side of tracing, imported only when tracing is on: a provider of the
app's own with ParentBased(TraceIdRatio) sampling, a ``BatchSpanProcessor`` exporting over
OTLP (HTTP or gRPC) from the processor's thread, and the recent traces kept for
``GET /traces``. The app's tracer records spans cheaply and hands them to this provider off
the request path (``llmops.tracing.deferred``)."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from llmops.config.monitoring import TracingConfig
from llmops.deps import require
from llmops.tracing import Tracing
from llmops.tracing.deferred import DeferredTracer, PresetIds, Replay
from llmops.tracing.recent import RecentTraces

SCOPE = "llmops"
DEFAULT_ENDPOINTS = {
    "otlp-http": "http://localhost:4318/v1/traces",
    "otlp-grpc": "http://localhost:4317",
}
_EXPORTER_MODULES = {
    "otlp-http": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "otlp-grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
}


def make_tracing(config: TracingConfig, service_name: str) -> Tracing:
    """The provider, exporter and recent-trace store ``config`` asks for (no I/O: the
    exporter connects, and its process starts, when it first exports)."""
    sampler = ParentBased(TraceIdRatioBased(config.sample_ratio))
    ids = PresetIds()
    provider = TracerProvider(
        sampler=sampler,
        resource=Resource.create({"service.name": service_name}),
        id_generator=ids,
    )
    exporter = make_exporter(config)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    recent = RecentTraces(config.keep_recent) if config.keep_recent else None
    if recent is not None:
        provider.add_span_processor(recent)
    replay = Replay(provider.get_tracer(SCOPE), ids)
    return Tracing(DeferredTracer(sampler, replay), provider, recent, replay)


def make_exporter(config: TracingConfig) -> SpanExporter | None:
    """The exporter of ``config.exporter`` (None for ``none``); a missing exporter package
    raises MissingDependency naming the ``tracing`` extra."""
    if config.exporter == "none":
        return None
    endpoint = config.endpoint or DEFAULT_ENDPOINTS[config.exporter]
    return otlp_exporter(config.exporter, endpoint, dict(config.headers), config.timeout_s)


def otlp_exporter(
    exporter: str, endpoint: str, headers: dict[str, str], timeout_s: float
) -> SpanExporter:
    """The SDK's OTLP exporter: ``otlp-http`` or ``otlp-grpc`` (an http:// gRPC endpoint is
    plaintext)."""
    module = require(_EXPORTER_MODULES[exporter], "tracing")
    if exporter == "otlp-grpc":
        insecure = endpoint.startswith("http://")
        made: SpanExporter = module.OTLPSpanExporter(
            endpoint=endpoint, insecure=insecure, headers=headers or None, timeout=timeout_s
        )
    else:
        made = module.OTLPSpanExporter(
            endpoint=endpoint, headers=headers or None, timeout=timeout_s
        )
    return made
