"""FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from llmops.errors import BackendError, InvalidRequest, LLMOpsError, NotReady
from llmops.server import metrics
from llmops.server.middleware import BodyLimit, RequestId
from llmops.server.routes import feedback, health, ingest, openai_api, query
from llmops.service import RAG

REQUEST_ID = "X-Request-ID"


def create_app(rag: RAG, *, workers: int = 1) -> FastAPI:
    """An HTTP app serving ``rag``; starting the app starts the RAG, stopping it closes it.

    ``workers`` is how many processes serve the same index: with more than one, an ingestion
    through the API would update only this process's view of it, so ``POST /ingest`` is refused.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await rag.astart()
        try:
            yield
        finally:
            await ingest.wait_for_jobs(app)
            await rag.aclose()

    app = FastAPI(
        title="llmops",
        summary="Questions answered from your documents, with sources.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.rag = rag
    app.state.jobs = {}
    app.state.workers = workers
    app.add_middleware(BodyLimit, max_bytes=rag.config.server.max_body_bytes)
    app.add_middleware(RequestId)
    if rag.monitor.metrics is not None:
        app.add_middleware(metrics.HttpMetrics, metrics=rag.monitor.metrics)
    app.add_exception_handler(InvalidRequest, _error(400))
    app.add_exception_handler(NotReady, _error(503))
    app.add_exception_handler(BackendError, _error(503))
    app.add_exception_handler(LLMOpsError, _error(500))
    for module in (query, ingest, health, openai_api):
        app.include_router(module.router)
    app.include_router(metrics.router)
    app.include_router(feedback.router)
    return app


def _error(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", None)
        return JSONResponse(
            {"detail": str(exc), "request_id": request_id},
            status_code=status,
            headers={REQUEST_ID: request_id} if request_id else None,
        )

    return handle
