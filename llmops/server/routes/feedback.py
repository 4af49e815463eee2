"""POST /feedback: a user's rating of an answer, stored with its row in the request log."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from llmops.service import RAG

router = APIRouter(tags=["monitoring"])


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, description="The X-Request-ID of the answer.")
    score: float = Field(ge=-1, le=1, description="-1 (bad) to 1 (good).")


@router.post("/feedback", summary="Rate an answer (stored in the request log)")
async def post_feedback(body: FeedbackRequest, request: Request) -> dict[str, str]:
    rag: RAG = request.app.state.rag
    log = rag.monitor.request_log
    if log is None:
        raise HTTPException(404, "the request log is off (monitoring.request_log.enabled)")
    if not await asyncio.to_thread(log.set_feedback, body.request_id, body.score):
        raise HTTPException(404, f"no logged request with id '{body.request_id}'")
    return {"status": "recorded", "request_id": body.request_id}
