"""GET /requests: the request log, newest first, filtered by time, variant, feedback,
latency and abstention; GET /requests/timeline: traffic and rewards per variant over time.

Both need the ``admin`` scope when keys are on (the log holds every user's questions). An
unknown or repeated query parameter is refused (422), not ignored: a misspelt filter must not
show every row."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from llmops.monitoring.request_filter import MAX_BUCKETS, MAX_ROWS, FeedbackFilter, RequestFilter
from llmops.server.errors import documented
from llmops.service import RAG


def single_values(request: Request) -> None:
    """Refuse a repeated query parameter (``?variant=a&variant=b``) rather than keep one."""
    params = request.query_params
    repeated = sorted({key for key in params if len(params.getlist(key)) > 1})
    if repeated:  # in the shape of every other invalid input
        raise RequestValidationError(
            [
                {"type": "repeated", "loc": ("query", key), "msg": "given more than once",
                 "input": params.getlist(key)}
                for key in repeated
            ]
        )  # fmt: skip


router = APIRouter(
    tags=["monitoring"], responses=documented(400, 503), dependencies=[Depends(single_values)]
)

MAX_VARIANT_CHARS = 200
DAY_S = 86400.0
MAX_EPOCH_S = 1e11  # about the year 5000: finite bounds keep bucket widths finite
PARAMETERS = ConfigDict(extra="forbid", allow_inf_nan=False)
Epoch = Annotated[float | None, Field(None, ge=0, le=MAX_EPOCH_S)]


class RequestsQuery(BaseModel):
    model_config = PARAMETERS
    since: Epoch = Field(None, description="Epoch seconds: from this time on.")
    until: Epoch = Field(None, description="Epoch seconds: before this time.")
    variant: str | None = Field(None, max_length=MAX_VARIANT_CHARS)
    feedback: FeedbackFilter = Field("any", description="rated, unrated, up, down or any.")
    min_latency_ms: float | None = Field(None, ge=0)
    max_latency_ms: float | None = Field(None, ge=0)
    abstained: bool | None = Field(None, description="Only abstentions (true) or answers.")
    limit: int = Field(100, ge=1, le=MAX_ROWS)


class TimelineQuery(BaseModel):
    model_config = PARAMETERS
    since: Epoch = Field(None, description="Epoch seconds; default: a day before `until`.")
    until: Epoch = Field(None, description="Epoch seconds; default: now.")
    buckets: int = Field(48, ge=1, le=MAX_BUCKETS)


@router.get("/requests", summary="Logged requests, newest first, with filters")
async def get_requests(
    request: Request, query: Annotated[RequestsQuery, Query()]
) -> dict[str, Any]:
    rag: RAG = request.app.state.rag
    where = RequestFilter(**query.model_dump())
    rows = await asyncio.to_thread(rag.history.requests, where)
    return {"requests": rows, "count": len(rows), "limit": query.limit}


@router.get("/requests/timeline", summary="Requests and rewards per variant over time")
async def get_timeline(
    request: Request, query: Annotated[TimelineQuery, Query()]
) -> dict[str, Any]:
    rag: RAG = request.app.state.rag
    end = query.until if query.until is not None else time.time()
    start = query.since if query.since is not None else end - DAY_S
    if end <= start:
        raise HTTPException(400, f"until ({end}) must come after since ({start})")
    return await asyncio.to_thread(rag.history.timeline, start, end, query.buckets)
