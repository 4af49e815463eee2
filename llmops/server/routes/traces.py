"""GET /traces (recent traces, newest first) and GET /traces/{trace_id} (one trace's span
tree): the spans this process recorded, kept in memory (``monitoring.tracing.keep_recent``),
for the console's waterfall. Both need the ``admin`` scope when keys are on, as the request
log does. Shared by the RAG app and the model app (``app.state.tracing``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from llmops.server.errors import documented
from llmops.tracing import Tracing

if TYPE_CHECKING:  # the SDK is imported only when tracing is on
    from llmops.tracing.recent import RecentTraces

router = APIRouter(tags=["monitoring"], responses=documented(404))

TraceId = Annotated[
    str,
    Path(
        min_length=32,
        max_length=32,
        pattern="^[0-9a-f]{32}$",
        description="32 lowercase hex digits (X-Trace-ID).",
    ),
]


class TraceSummary(BaseModel):
    trace_id: str
    name: str = Field(description="The root span's name, e.g. 'POST /query'.")
    start_ns: int = Field(description="Epoch nanoseconds of the first span's start.")
    end_ns: int = Field(description="Epoch nanoseconds of the last span's end.")
    duration_ms: float
    spans: int = Field(description="Spans kept of this trace.")
    status: str = Field(description="The root span's status: UNSET, OK or ERROR.")


class TraceList(BaseModel):
    traces: list[TraceSummary]


class SpanStatus(BaseModel):
    code: str = Field(description="UNSET, OK or ERROR.")
    description: str | None


class SpanEvent(BaseModel):
    name: str
    time_ns: int
    attributes: dict[str, Any]


class SpanNode(BaseModel):
    name: str
    span_id: str = Field(description="16 hex digits.")
    parent_id: str | None = Field(description="The parent span (maybe a caller's); null: none.")
    kind: str = Field(description="SERVER, INTERNAL, CLIENT, ...")
    start_ns: int
    end_ns: int
    duration_ms: float
    attributes: dict[str, Any]
    status: SpanStatus
    events: list[SpanEvent]
    children: list[SpanNode] = Field(description="Child spans, by start time.")


class TraceTree(BaseModel):
    trace_id: str
    spans: list[SpanNode] = Field(description="The root span(s), each with its descendants.")


@router.get("/traces", summary="Recent traces, newest first", response_model=TraceList)
async def traces(
    request: Request, limit: int = Query(20, ge=1, le=1000, description="At most this many.")
) -> dict[str, Any]:
    return {"traces": _recent(request).recent(limit)}


@router.get("/traces/{trace_id}", summary="One trace's span tree", response_model=TraceTree)
async def trace(trace_id: TraceId, request: Request) -> dict[str, Any]:
    recent = _recent(request)
    tree = recent.tree(trace_id)
    if tree is None:
        raise HTTPException(
            404,
            f"no trace '{trace_id}' here: only the last {recent.keep} sampled traces of this "
            "process are kept (monitoring.tracing.keep_recent); older ones are in your collector",
        )
    return tree


def _recent(request: Request) -> RecentTraces:
    tracing: Tracing = request.app.state.tracing
    recent = tracing.recent
    if recent is None:
        raise HTTPException(
            404,
            "no traces are kept: turn on monitoring.tracing (enabled: true) with keep_recent > 0",
        )
    return recent
