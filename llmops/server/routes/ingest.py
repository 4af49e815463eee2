"""POST /ingest starts a background ingestion; GET /ingest/{job_id} reports on it."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter, FastAPI, HTTPException, Request

from llmops.errors import LLMOpsError
from llmops.pipelines.ingest import IngestProgress
from llmops.server.errors import documented
from llmops.server.schemas import IngestJob, IngestRequest
from llmops.service import RAG

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
    jobs: dict[str, IngestJob] = app.state.jobs
    running = [j for j in jobs.values() if j.status == "running"]
    if running:
        raise HTTPException(409, f"ingestion {running[0].job_id} is still running")
    job = IngestJob(job_id=uuid.uuid4().hex, status="running", full=bool(body and body.full))
    jobs[job.job_id] = job
    app.state.tasks = {*getattr(app.state, "tasks", set()), asyncio.create_task(_run(app, job))}
    return job


@router.get("/ingest/{job_id}", response_model=IngestJob, summary="Status of an ingestion")
async def get_ingest(job_id: str, request: Request) -> IngestJob:
    job: IngestJob | None = request.app.state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no ingestion job '{job_id}'")
    return job


async def _run(app: FastAPI, job: IngestJob) -> None:
    rag: RAG = app.state.rag

    def progress(p: IngestProgress) -> None:
        job.files_total, job.files_done, job.chunks_done = (
            p.files_total,
            p.files_done,
            p.chunks_done,
        )

    try:
        report = await rag.aingest(full=job.full, progress=progress)
    except LLMOpsError as exc:
        job.status, job.error = "failed", str(exc)
        return
    except Exception as exc:  # a background job must always end in a final state
        job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        return
    job.status, job.report = "succeeded", report.to_dict()


async def wait_for_jobs(app: FastAPI) -> None:
    """Let running ingestions finish before the app shuts down."""
    tasks: set[asyncio.Task[None]] = getattr(app.state, "tasks", set())
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
