"""GET /health, /ready and /stats."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from llmops.server import jobs
from llmops.service import RAG

NOT_BUILT = "no index yet: run `llmops ingest` (or POST /ingest)"

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    ready: bool
    reason: str | None = Field(
        description="Why not yet: 'indexing 120/768 files (ingestion ...)' while the first "
        "ingestion runs, or what to do."
    )


@router.get(
    "/ready",
    summary="Readiness: models loaded and an index to answer from",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready, with the reason"}},
)
async def ready(request: Request) -> JSONResponse:
    rag: RAG = request.app.state.rag
    is_ready = await asyncio.to_thread(lambda: rag.ready)
    reason = None if is_ready else (jobs.building(request.app) or NOT_BUILT)
    body = Readiness(ready=is_ready, reason=reason).model_dump()
    return JSONResponse(body, status_code=200 if is_ready else 503)


@router.get("/stats", summary="Index size, collection, embedder and the last ingestion")
async def stats(request: Request) -> dict[str, Any]:
    rag: RAG = request.app.state.rag
    return await asyncio.to_thread(rag.stats)
