"""POST /feedback: a user's rating of an answer. It is stored with the request's row in the
request log and, when the app runs an experiment, credited to the variant that answered."""

from __future__ import annotations

from typing import Literal, Self

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field, model_validator

from llmops.routing.router import ExperimentRouter, NoShadow, UnknownRequest
from llmops.server.errors import documented
from llmops.server.schemas import STRICT
from llmops.service import RAG

router = APIRouter(tags=["experiments"], responses=documented(400, 404, 413, 503))


class FeedbackRequest(BaseModel):
    model_config = STRICT
    request_id: str = Field(
        min_length=1, max_length=128, description="The X-Request-ID of the answer."
    )
    reward: float | None = Field(None, description="A score: 1 / 0, or any number (numeric).")
    thumbs: Literal["up", "down"] | None = Field(None, description="up = reward 1, down = 0.")
    comment: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _one_rating(self) -> Self:
        if (self.reward is None) == (self.thumbs is None):
            raise ValueError("give exactly one of reward and thumbs")
        return self

    def value(self) -> float:
        if self.reward is not None:
            return self.reward
        return 1.0 if self.thumbs == "up" else 0.0


class FeedbackResponse(BaseModel):
    status: Literal["recorded"]
    request_id: str
    variant: str | None = Field(description="The experiment variant credited (null: none).")


@router.post("/feedback", response_model=FeedbackResponse, summary="Rate an answer")
async def post_feedback(body: FeedbackRequest, request: Request) -> FeedbackResponse:
    rag: RAG = request.app.state.rag
    reward = body.value()
    try:
        variant = await rag.afeedback(body.request_id, reward)
    except UnknownRequest as exc:
        raise HTTPException(404, str(exc)) from None
    others_write = request.app.state.workers > 1  # other processes answer too
    logged = await rag.alog_feedback(body.request_id, reward, body.comment, others_write)
    if variant is None and not logged:
        raise HTTPException(404, f"no logged request with id '{body.request_id}'")
    return FeedbackResponse(status="recorded", request_id=body.request_id, variant=variant)


@router.get("/experiments", summary="Traffic and rewards per variant of the app's experiment")
async def get_experiments(request: Request) -> dict[str, object]:
    return await (await _router(request)).report()


@router.get(
    "/experiments/shadow",
    summary="The newest shadow runs: both answers, their agreement and latencies",
)
async def get_shadow_runs(
    request: Request, limit: int = Query(20, ge=1, le=1000)
) -> dict[str, object]:
    experiment = await _router(request)
    try:
        runs = await experiment.shadow_runs(limit)
    except NoShadow as exc:
        raise HTTPException(404, str(exc)) from None
    return {"experiment": experiment.name, "runs": runs}


async def _router(request: Request) -> ExperimentRouter:
    rag: RAG = request.app.state.rag
    if rag.experiment is None:
        raise HTTPException(404, "this app runs no experiment (no `experiment:` in its config)")
    await rag.astart()
    return rag.experiment.running()
