"""Pure ASGI middleware (no body copy): request ids, traces, cancelling work the client left,
and the body-size limit."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from abc import ABC, abstractmethod
from contextlib import suppress

from fastapi import FastAPI
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops import tracing
from llmops.config.auth import CorsConfig
from llmops.server.errors import error_response

log = logging.getLogger("llmops.server")

CLIENT_ID_CHARS = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._:@/+=-]")


def correlation_id(given: bytes | None) -> str | None:
    """A caller's id, kept for correlation: printable ASCII id characters only, at most 128."""
    if not given:
        return None
    return _UNSAFE.sub("", given.decode("latin-1"))[:CLIENT_ID_CHARS] or None


class HttpMiddleware(ABC):
    """Pure ASGI middleware that acts on HTTP requests; other scopes (lifespan) pass through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    @abstractmethod
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request through ``self.app``."""


class RequestId(HttpMiddleware):
    """Every request gets the server's own id (``request.state.request_id``): it keys the
    request log and feedback, and goes back in ``X-Request-ID``. A caller's ``X-Request-ID``
    never replaces it: sanitised, it is kept as ``request.state.correlation_id``, logged beside
    the request and echoed in ``X-Correlation-ID``."""

    header = b"x-request-id"
    echo = b"x-correlation-id"

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = uuid.uuid4().hex
        headers = dict(scope.get("headers", []))
        client_id = correlation_id(headers.get(self.header) or headers.get(self.echo))
        state = scope.setdefault("state", {})
        state["request_id"], state["correlation_id"] = request_id, client_id
        added = [(self.header, request_id.encode())]
        if client_id:
            added.append((self.echo, client_id.encode()))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                ours = {self.header, self.echo}
                kept = [h for h in message.get("headers", []) if h[0].lower() not in ours]
                message = {**message, "headers": [*kept, *added]}
            await send(message)

        await self.app(scope, receive, send_with_id)


class TraceRequests(HttpMiddleware):
    """A server span per request (OpenTelemetry's HTTP conventions), continuing the caller's
    W3C ``traceparent``; every span of the request's work is its descendant. A recorded
    (sampled) trace goes back in ``traceparent`` and ``X-Trace-ID``. Installed only when
    tracing is on."""

    propagator = TraceContextTextMapPropagator()
    trace_headers = (b"traceparent", b"tracestate")

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        super().__init__(app)
        self.tracer = tracer

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = self._start(scope)
        added = []
        if (parent := tracing.traceparent(span)) is not None:
            trace_id = parent.split("-")[1]
            added = [(b"traceparent", parent.encode()), (b"x-trace-id", trace_id.encode())]
        status = 0

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                kept = [h for h in message.get("headers", []) if h[0].lower() != b"traceparent"]
                message = {**message, "headers": [*kept, *added]}
            await send(message)

        with tracing.active(span):
            try:
                await self.app(scope, receive, send_traced)
            finally:
                _finished(span, scope, status)

    def _start(self, scope: Scope) -> Span:
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name.lower() in self.trace_headers
        }
        attributes = {
            "http.request.method": scope["method"],
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        return self.tracer.start_span(
            scope["method"],
            context=self.propagator.extract(carrier),
            kind=SpanKind.SERVER,
            attributes=attributes,
        )


def _finished(span: Span, scope: Scope, status: int) -> None:
    """What the server span says at the end, in one call: the status (a 5xx fails the span;
    a 4xx is the caller's error, not the server's, by the HTTP conventions), the route that
    served the request (the span is named by it: ``POST /query``) and the request id."""
    if not span.is_recording():
        return
    attributes: tracing.Attributes = {}
    if status:
        attributes["http.response.status_code"] = status
    if status >= 500:
        span.set_status(StatusCode.ERROR)
        attributes[tracing.ERROR_TYPE] = str(status)
    route = getattr(scope.get("route"), "path", None)
    if route:
        attributes["http.route"] = route
        span.update_name(f"{scope['method']} {route}")
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        attributes["llmops.request_id"] = request_id
    span.set_attributes(attributes)


class CancelOnDisconnect(HttpMiddleware):
    """When the client goes away before its response is complete, the request's work (search,
    the backend call and its retries) is cancelled instead of running on for nobody.

    After the request body has been read, a watcher waits for the next ASGI message (the
    server sends ``http.disconnect`` when the connection closes) and cancels the handler; the
    message is still handed on to the app, for streaming responses that listen for it.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        body_read = asyncio.Event()
        later: asyncio.Queue[Message] = asyncio.Queue()
        complete = False

        async def app_receive() -> Message:
            if body_read.is_set():
                return await later.get()
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()
            return message

        async def app_send(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, app_receive, app_send))

        async def watch() -> None:
            await body_read.wait()
            message = await receive()
            await later.put(message)
            if message["type"] == "http.disconnect" and not complete:
                handler.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await handler
        except asyncio.CancelledError:
            if not handler.cancelled() or _cancelling():
                raise
            request_id = scope.get("state", {}).get("request_id")
            log.info("client went away: request %s %s cancelled", request_id, scope["path"])
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher


def _cancelling() -> bool:
    """True when this task itself is being cancelled (a shutdown), not just the handler."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class BodyTooLarge(Exception):
    pass


class BodyLimit(HttpMiddleware):
    """Refuses bodies over ``max_bytes``: by Content-Length, and counting streamed bodies."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body larger than {self.max_bytes} bytes"
        request_id = scope.get("state", {}).get("request_id")
        await error_response(scope["path"], 413, message, request_id)(scope, receive, send)


def install_tracing(app: FastAPI, traces: tracing.Tracing) -> None:
    """Keep ``traces`` for ``GET /traces``; with tracing on, a span per request. Add it last
    (it runs first): the span then covers refusals and every other middleware."""
    app.state.tracing = traces
    if traces.enabled:
        app.add_middleware(TraceRequests, tracer=traces.tracer)


def install_cors(app: FastAPI, config: CorsConfig) -> None:
    """Starlette's CORS middleware with ``config``'s origins; nothing when none are listed.
    Add it after the API-key middleware: a browser's preflight carries no key."""
    if not config.allow_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=config.allow_origins,
        allow_methods=config.allow_methods,
        allow_headers=config.allow_headers,
        allow_credentials=config.allow_credentials,
        max_age=config.max_age_s,
        expose_headers=["X-Request-ID", "X-Correlation-ID", "X-Trace-ID", "Retry-After"],
    )
