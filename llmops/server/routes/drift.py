"""GET /drift: the drift checks of this process, each signal's p-value against its level and
the alerts, for the console's drift page (``admin`` scope when keys are on)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from llmops.server.errors import documented
from llmops.service import RAG

router = APIRouter(tags=["monitoring"], responses=documented(503))


@router.get("/drift", summary="Drift checks over time: signals, levels and alerts")
async def get_drift(request: Request) -> dict[str, Any]:
    rag: RAG = request.app.state.rag
    return await asyncio.to_thread(rag.history.drift)
