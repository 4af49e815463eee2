"""GET /health, /ready and /stats."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmops.service import RAG

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: index open and embedding model loaded")
async def ready(request: Request) -> JSONResponse:
    rag: RAG = request.app.state.rag
    is_ready = await asyncio.to_thread(lambda: rag.ready)
    reason = None if is_ready else "index not built yet or model not loaded"
    return JSONResponse({"ready": is_ready, "reason": reason}, status_code=200 if is_ready else 503)


@router.get("/stats", summary="Index size, collection, embedder and the last ingestion")
async def stats(request: Request) -> dict[str, Any]:
    rag: RAG = request.app.state.rag
    return await asyncio.to_thread(rag.stats)
