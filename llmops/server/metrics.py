"""HTTP metrics: a pure ASGI middleware that times every request by route template, and
``GET /metrics`` in the Prometheus text format."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.monitoring.context import begin_request
from llmops.monitoring.metrics import Metrics
from llmops.server.errors import documented
from llmops.server.middleware import HttpMiddleware

router = APIRouter(tags=["monitoring"])
UNMATCHED = "unmatched"  # unknown paths share one label: a scanner cannot blow up the series


class HttpMetrics(HttpMiddleware):
    """Counts and times each HTTP request under its route template (``/query``), with the
    backend and variant the query path tagged it with."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        labels = begin_request()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED)
            seconds = time.perf_counter() - started
            self.metrics.http_request(route, scope["method"], status, seconds, labels)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **documented(404)},
)
async def get_metrics(request: Request) -> Response:
    metrics: Metrics | None = request.app.state.rag.monitor.metrics
    if metrics is None:
        raise HTTPException(404, "metrics are off (monitoring.metrics: false)")
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
