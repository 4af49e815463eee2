"""The HTTP app of a model app (``kind: model``): ``POST /predict/{model}``, ``GET /models``,
``/health`` and ``/ready``, with the same request ids, error shapes, body limit and
cancellation as the RAG app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from llmops.model_service import ModelService
from llmops.server import errors
from llmops.server.errors import documented
from llmops.server.middleware import BodyLimit, CancelOnDisconnect, RequestId
from llmops.server.routes.health import Readiness, health
from llmops.server.schemas import STRICT

router = APIRouter(tags=["models"])


class PredictRequest(BaseModel):
    model_config = STRICT
    rows: list[dict[str, Any]] = Field(
        min_length=1, description="Rows as {column: value}; serving.max_rows at most."
    )


class PredictionOut(BaseModel):
    label: Any = Field(description="The predicted class (or value, for regression).")
    probabilities: dict[str, float] | None = Field(description="Each class's probability.")


class PredictResponse(BaseModel):
    model: str
    version: int = Field(description="The registered version that answered.")
    alias: str = Field(description="The alias it was served under (serving.alias).")
    request_id: str
    predictions: list[PredictionOut]


@router.post(
    "/predict/{model}",
    response_model=PredictResponse,
    responses=documented(400, 404, 413, 503),
    summary="Predict a batch of rows with the version the serving alias points at",
)
async def predict(model: str, body: PredictRequest, request: Request) -> PredictResponse:
    service: ModelService = request.app.state.service
    result = await service.predict(model, body.rows, request.state.request_id)
    return PredictResponse.model_validate(
        {
            "model": result.model,
            "version": result.version,
            "alias": result.alias,
            "request_id": result.request_id,
            "predictions": [
                {"label": p.label, "probabilities": p.probabilities} for p in result.predictions
            ],
        }
    )


@router.get("/models", summary="The model served: its version, alias and metrics")
async def models(request: Request) -> dict[str, Any]:
    service: ModelService = request.app.state.service
    return service.status()


router.get("/health", summary="Liveness: the process answers")(health)


@router.get(
    "/ready",
    summary="Readiness: a version is loaded",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready, with the reason"}},
)
async def ready(request: Request) -> JSONResponse:
    service: ModelService = request.app.state.service
    reason = None if service.ready else service.not_ready_reason()
    body = Readiness(ready=service.ready, reason=reason).model_dump()
    return JSONResponse(body, status_code=200 if service.ready else 503)


def create_model_app(service: ModelService) -> FastAPI:
    """The HTTP app of ``service``; starting the app starts it (and its alias following)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.astart()
        try:
            yield
        finally:
            await service.aclose()

    app = FastAPIOffline(
        title=f"llmops model: {service.name}",
        summary="Predictions from the registered version the serving alias points at.",
        version="0.1.0",
        lifespan=lifespan,
        static_url="/docs-assets",
    )
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=service.app.serving.max_body_bytes)
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(RequestId)
    errors.install(app)
    app.include_router(router)
    return app
