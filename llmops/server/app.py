"""FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from llmops.server import errors, metrics
from llmops.server.middleware import BodyLimit, CancelOnDisconnect, RequestId
from llmops.server.routes import feedback, health, ingest, openai_api, query
from llmops.service import RAG


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

    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the installed package,
    # not from a CDN, so they work on a machine without internet
    app = FastAPIOffline(
        title="llmops",
        summary="Questions answered from your documents, with sources.",
        version="0.1.0",
        lifespan=lifespan,
        static_url="/docs-assets",
    )
    app.state.rag = rag
    app.state.jobs = {}
    app.state.workers = workers
    # the last added runs first: metrics see every request, then ids, then the rest
    app.add_middleware(BodyLimit, max_bytes=rag.config.server.max_body_bytes)
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(RequestId)
    if rag.monitor.metrics is not None:
        app.add_middleware(metrics.HttpMetrics, metrics=rag.monitor.metrics)
    errors.install(app)
    for module in (query, ingest, health, openai_api, metrics, feedback):
        app.include_router(module.router)
    openai_api.document_models(app, [rag.config.name])
    return app
