"""GET /evals (the app's eval runs, newest first), GET /evals/{run} (one run: metrics with
their CIs, gates with their thresholds and verdicts), GET /evals/compare (two runs, the paired
statistics of ``llmops eval compare``) and GET /evals/{run}/report (the run's HTML report),
read through ``RAG.history.eval_runs`` from ``evaluation.runs_dir``. They need the ``eval``
scope when keys are on. A name that is not a run's folder name is refused (422), an unknown
or unfinished run is a 404 saying why; an unknown or repeated query parameter is refused
(422), as on ``/requests``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from llmops.evaluation.runs import RUN_PATTERN, EvalRuns
from llmops.evaluation.suite import BASELINE
from llmops.server.errors import documented
from llmops.server.routes.requests import PARAMETERS, single_values
from llmops.service import RAG

router = APIRouter(
    tags=["evaluation"], responses=documented(400, 404), dependencies=[Depends(single_values)]
)

MAX_RUN_CHARS = 128
RunName = Annotated[
    str,
    Path(
        description="A run's folder name (GET /evals lists them).",
        pattern=RUN_PATTERN,
        max_length=MAX_RUN_CHARS,
    ),
]


class RunsQuery(BaseModel):
    model_config = PARAMETERS
    limit: int = Field(100, ge=1, le=1000, description="At most this many runs.")


class CompareQuery(BaseModel):
    model_config = PARAMETERS
    base: str = Field(
        description="The earlier run (A).", pattern=RUN_PATTERN, max_length=MAX_RUN_CHARS
    )
    head: str = Field(
        description="The later run (B).", pattern=RUN_PATTERN, max_length=MAX_RUN_CHARS
    )
    variant: str = Field(
        BASELINE, description="Which variant of each run.", pattern=RUN_PATTERN, max_length=63
    )


# the report is a file the runner wrote: it may style itself, nothing may run or be fetched
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src data:; frame-ancestors 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
}


def _runs(request: Request) -> EvalRuns:
    rag: RAG = request.app.state.rag
    return rag.history.eval_runs


@router.get("/evals", summary="Eval runs, newest first: suite, variants, metrics, gates")
async def list_runs(request: Request, query: Annotated[RunsQuery, Query()]) -> dict[str, Any]:
    return await asyncio.to_thread(_runs(request).listing, query.limit)


@router.get("/evals/compare", summary="Two eval runs compared, metric by metric (head − base)")
async def compare_runs(request: Request, query: Annotated[CompareQuery, Query()]) -> dict[str, Any]:
    runs = _runs(request)
    return await asyncio.to_thread(runs.compare, query.base, query.head, query.variant)


@router.get("/evals/{run}", summary="One eval run: metrics with 95% CIs, gates and verdicts")
async def get_run(run: RunName, request: Request) -> dict[str, Any]:
    detail = await asyncio.to_thread(_runs(request).run, run)
    report = request.url_for("eval_report", run=run).path if detail["report"] else None
    return {**detail, "report_url": report}


@router.get(
    "/evals/{run}/report",
    name="eval_report",
    summary="One eval run's HTML report",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}},
)
async def get_report(run: RunName, request: Request) -> FileResponse:
    path = await asyncio.to_thread(_runs(request).report, run)
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)
