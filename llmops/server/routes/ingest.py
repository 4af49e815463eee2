"""POST /ingest starts a background ingestion; GET /ingest/{job_id} reports on it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Path, Request

from llmops.server import jobs
from llmops.server.errors import documented
from llmops.server.schemas import IngestJob, IngestRequest

router = APIRouter(tags=["ingest"], responses=documented(400, 404, 409, 413, 503))


@router.post("/ingest", status_code=202, response_model=IngestJob, summary="Start an ingestion")
async def start_ingest(request: Request, body: IngestRequest | None = None) -> IngestJob:
    app: FastAPI = request.app
    if app.state.workers > 1:
        raise HTTPException(
            409,
            f"this server runs {app.state.workers} worker processes, each with its own view of "
            "the index: run `llmops ingest` and restart, or serve with one worker",
        )
    running = jobs.running(app)
    if running is not None:
        raise HTTPException(409, f"ingestion {running.job_id} is still running")
    return jobs.start_job(app, full=bool(body and body.full))


@router.get("/ingest/{job_id}", response_model=IngestJob, summary="Status of an ingestion")
async def get_ingest(job_id: Annotated[str, Path(max_length=64)], request: Request) -> IngestJob:
    job: IngestJob | None = request.app.state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no ingestion job '{job_id}'")
    return job
