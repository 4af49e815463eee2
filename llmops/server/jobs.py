"""Ingestion jobs in the background of a serving app: those started by ``POST /ingest`` and the
first one of ``llmops up``, which runs while the server already answers (``/health`` at once,
``/ready`` with "indexing n/m files" until the index exists).

At shutdown a running job stops after the batch it is writing (the next ingestion resumes
where it stopped, without duplicates), so a restart never waits for a whole corpus."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from fastapi import FastAPI

from llmops.errors import IngestError, LLMOpsError
from llmops.pipelines.ingest import IngestProgress, IngestReport, ProgressFn
from llmops.server.schemas import IngestJob
from llmops.service import RAG

log = logging.getLogger("llmops.server")

Finished = Callable[[IngestReport | None, str | None], None]
"""Told when a job ends: its report, or the reason it failed."""


def init(app: FastAPI) -> None:
    app.state.jobs = {}
    app.state.tasks = set()
    app.state.stopping = False


def start_job(
    app: FastAPI,
    full: bool,
    progress: ProgressFn | None = None,
    finished: Finished | None = None,
) -> IngestJob:
    """Start an ingestion in the background; ``progress`` and ``finished`` also hear of it."""
    job = IngestJob(job_id=uuid.uuid4().hex, status="running", full=full)
    app.state.jobs[job.job_id] = job
    task = asyncio.create_task(_run(app, job, progress, finished))
    app.state.tasks.add(task)
    task.add_done_callback(app.state.tasks.discard)
    return job


def running(app: FastAPI) -> IngestJob | None:
    jobs: dict[str, IngestJob] = getattr(app.state, "jobs", {})  # apps without ingestion
    return next((j for j in jobs.values() if j.status == "running"), None)


def building(app: FastAPI) -> str | None:
    """What a running ingestion has done, when one runs: "indexing 120/768 files"."""
    job = running(app)
    if job is None:
        return None
    return f"indexing {job.files_done}/{job.files_total} files (ingestion {job.job_id})"


async def stop_jobs(app: FastAPI) -> None:
    """Stop running ingestions after their current batch and wait for them."""
    app.state.stopping = True
    tasks: set[asyncio.Task[None]] = app.state.tasks
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run(
    app: FastAPI, job: IngestJob, progress: ProgressFn | None, finished: Finished | None
) -> None:
    rag: RAG = app.state.rag

    def track(p: IngestProgress) -> None:
        if app.state.stopping:  # raised in the writer, between batches: nothing half-written
            raise IngestError("stopped: the server is shutting down; the next ingestion resumes")
        job.files_total, job.files_done, job.chunks_done = (
            p.files_total,
            p.files_done,
            p.chunks_done,
        )
        if progress is not None:
            progress(p)

    report: IngestReport | None = None
    try:
        report = await rag.aingest(full=job.full, progress=track)
    except LLMOpsError as exc:
        job.status, job.error = "failed", str(exc)
        log.error("ingestion %s failed: %s", job.job_id, job.error)
    except Exception as exc:  # a background job must always end in a final state
        job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        log.error("ingestion %s failed: %s", job.job_id, job.error)
    else:
        job.status, job.report = "succeeded", report.to_dict()
    if finished is not None:
        finished(report, job.error)
