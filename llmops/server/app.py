"""FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from llmops.pipelines.ingest import ProgressFn
from llmops.server import auth, errors, jobs, metrics, ui
from llmops.server.heap import freeze_startup_heap
from llmops.server.middleware import (
    BodyLimit,
    CancelOnDisconnect,
    RequestId,
    install_cors,
    install_tracing,
)
from llmops.server.routes import (
    drift,
    evals,
    feedback,
    health,
    ingest,
    model_registry,
    openai_api,
    query,
    requests,
    traces,
)
from llmops.service import RAG


@dataclass(frozen=True)
class FirstIngestion:
    """An ingestion to start with the app (``llmops up``): it runs in the background while the
    app answers; ``progress`` and ``finished`` hear of it (see ``jobs.start_job``)."""

    progress: ProgressFn | None = None
    finished: jobs.Finished | None = None


def create_app(
    rag: RAG,
    *,
    workers: int = 1,
    first_ingestion: FirstIngestion | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """An HTTP app serving ``rag``; starting the app starts the RAG (its models load before the
    app accepts requests), stopping it stops running ingestions and closes the RAG.

    ``workers`` is how many processes serve the same index: with more than one, an ingestion
    through the API would update only this process's view of it, so ``POST /ingest`` is refused.
    ``freeze_heap``: the process serves this app alone (``llmops up``), so what start-up loaded
    is frozen out of the garbage collector's passes (``llmops.server.heap``).
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await rag.astart()
        if freeze_heap:
            freeze_startup_heap()
        if first_ingestion is not None:
            jobs.start_job(app, False, first_ingestion.progress, first_ingestion.finished)
        try:
            yield
        finally:
            await jobs.stop_jobs(app)
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
    app.state.workers = workers
    jobs.init(app)
    # the last added runs first: metrics see every request, then ids, API keys, the rest
    app.add_middleware(BodyLimit, max_bytes=rag.config.server.max_body_bytes)
    app.add_middleware(CancelOnDisconnect)
    server = rag.config.server
    counts = rag.monitor.metrics
    refusals = None if counts is None else counts.access_refusal
    auth.install(app, server.auth, rag.components.data_dir, server.host, refusals)
    app.add_middleware(RequestId)
    install_cors(app, rag.config.server.cors)  # outside the key check: preflights carry no key
    if rag.monitor.metrics is not None:
        app.add_middleware(metrics.HttpMetrics, metrics=rag.monitor.metrics)
    install_tracing(app, rag.components.tracing)
    errors.install(app)
    routes = (query, ingest, health, openai_api, metrics, feedback, requests, traces, drift, evals)
    for module in routes:
        app.include_router(module.router)
    app.state.registered = rag.registered
    pages: tuple[str, ...] = ui.RAG_PAGES
    if rag.registered:  # the app serves registered LoRA adapters
        app.include_router(model_registry.router)
        pages = (*pages, *ui.MODEL_PAGES)
    ui.install(app, pages, check="/stats")
    openai_api.document_models(app, [rag.config.name])
    return app
