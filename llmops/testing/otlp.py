"""OTLP trace receivers on 127.0.0.1 for tests and benchmarks: ``HttpCollector`` (``POST
/v1/traces``, protobuf) and ``GrpcCollector`` (the ``TraceService/Export`` RPC). Each keeps the
spans it received, with the request headers (gRPC: metadata) of the last export.

    with HttpCollector() as collector:
        ...  # tracing: {enabled: true, exporter: otlp-http, endpoint: collector.endpoint}
        spans = collector.wait_for(3)

Needs the ``tracing`` extra (opentelemetry-proto, grpcio).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, decoded: ids as hex, attributes as Python values."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int
    events: tuple[str, ...] = field(default=())


class _Collector(ABC):
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.headers: dict[str, str] = {}
        self.exports = 0
        self._changed = threading.Condition()

    def receive(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        spans = list(_decode(request))
        with self._changed:
            self.spans.extend(spans)
            self.exports += 1
            self._changed.notify_all()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """The spans received once there are at least ``count`` (fewer after the timeout)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self.spans) < count and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            return list(self.spans)

    def __enter__(self) -> _Collector:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Stop the receiver."""


class HttpCollector(_Collector):
    """OTLP/HTTP: ``endpoint`` is the full ``http://127.0.0.1:PORT/v1/traces`` URL."""

    def __init__(self) -> None:
        super().__init__()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                collector.headers = {k.lower(): v for k, v in self.headers.items()}
                collector.receive(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class GrpcCollector(_Collector):
    """OTLP/gRPC (plaintext): ``endpoint`` is ``http://127.0.0.1:PORT``."""

    def __init__(self) -> None:
        super().__init__()
        collector = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(
                self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
            ) -> trace_service_pb2.ExportTraceServiceResponse:
                collector.headers = {k: v for k, v in context.invocation_metadata()}
                collector.receive(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self._server.stop(grace=None)


def _decode(request: trace_service_pb2.ExportTraceServiceRequest) -> Any:
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield ReceivedSpan(
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex() or None,
                    kind=span.kind,
                    attributes=_attributes(span.attributes),
                    resource=resource,
                    status_code=span.status.code,
                    events=tuple(e.name for e in span.events),
                )


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None
