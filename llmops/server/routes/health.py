"""GET /health, /ready and /stats."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from llmops.server import jobs
from llmops.service import NOT_BUILT, RAG

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
    reason = await asyncio.to_thread(rag.not_ready_reason)
    if reason == NOT_BUILT:
        reason = jobs.building(request.app) or reason
    body = Readiness(ready=reason is None, reason=reason).model_dump()
    return JSONResponse(body, status_code=200 if reason is None else 503)


@router.get("/stats", summary="Index size, collection, embedder and the last ingestion")
async def stats(request: Request) -> dict[str, Any]:
    rag: RAG = request.app.state.rag
    return await asyncio.to_thread(rag.stats)
