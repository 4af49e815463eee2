"""The HTTP app of a model app (``kind: model``): ``POST /predict/{model}``, ``POST /labels``,
``GET /models``, the registry (``routes/model_registry.py``), ``/experiments``, the drift
report, ``/metrics``, ``/health``, ``/ready`` and the console's models page at ``/ui``,
with the same request ids, error shapes, body limit and cancellation as the RAG app."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from llmops import tracing
from llmops.model_service import ModelService
from llmops.monitoring.prediction_log import Label
from llmops.server import auth, errors, ui
from llmops.server.errors import documented
from llmops.server.heap import freeze_startup_heap
from llmops.server.middleware import (
    BodyLimit,
    CancelOnDisconnect,
    RequestId,
    install_cors,
    install_tracing,
)
from llmops.server.routes import model_registry
from llmops.server.routes import traces as traces_route
from llmops.server.routes.health import Readiness, health
from llmops.server.schemas import STRICT, config_limit
from llmops.tracing import Tracing

router = APIRouter(tags=["models"])


MAX_ROWS = 100_000
MAX_COLUMNS = 10_000
MAX_CELL_CHARS = 100_000
MAX_LABELS = 10_000
Text = Annotated[str, Field(max_length=MAX_CELL_CHARS)]
Int64 = Annotated[int, Field(ge=-(2**63), lt=2**63)]
Cell = Text | Int64 | float | bool | None
ModelName = Annotated[str, PathParam(max_length=200, description="The served model's name.")]


class PredictRequest(BaseModel):
    model_config = STRICT
    rows: list[Annotated[dict[str, Cell], Field(max_length=MAX_COLUMNS)]] = Field(
        min_length=1,
        max_length=MAX_ROWS,
        description="Rows as {column: value}.",
        json_schema_extra=config_limit("serving.max_rows"),
    )


class PredictionOut(BaseModel):
    label: Any = Field(description="The predicted class (or value, for regression).")
    probabilities: dict[str, float] | None = Field(description="Each class's probability.")


class PredictResponse(BaseModel):
    model: str
    version: int = Field(description="The registered version that answered.")
    alias: str = Field(
        description="The registry reference it was served under: serving.alias, or the "
        "routing variant's alias or version."
    )
    variant: str = Field(description="The routing variant (the alias, without routing).")
    request_id: str = Field(description="Send true labels for these rows with this id.")
    predictions: list[PredictionOut]


class LabelIn(BaseModel):
    model_config = STRICT
    request_id: str = Field(min_length=1, max_length=200, description="From the prediction.")
    row: int = Field(0, ge=0, lt=MAX_ROWS, description="The row's position in that request.")
    label: Text | Int64 | float | bool = Field(description="The true label (or value).")


class LabelsRequest(BaseModel):
    model_config = STRICT
    labels: list[LabelIn] = Field(min_length=1, max_length=MAX_LABELS)


class LabelRef(BaseModel):
    request_id: str
    row: int


class LabelsResponse(BaseModel):
    joined: int = Field(description="Labels that found their prediction.")
    unknown: list[LabelRef] = Field(
        description="Labels with no logged prediction (unknown id or row, or older than the "
        "log's retention)."
    )


@router.post(
    "/predict/{model}",
    response_model=PredictResponse,
    responses=documented(400, 404, 413, 503),
    summary="Predict a batch of rows with the version the serving alias points at",
)
async def predict(model: ModelName, body: PredictRequest, request: Request) -> PredictResponse:
    service: ModelService = request.app.state.service
    key = request.headers.get(service.app.routing.key) if service.app.routing else None
    tracer = request.app.state.tracing.tracer
    attributes = {"llmops.model": model, "llmops.rows": len(body.rows)}
    with tracing.active(tracer.start_span(f"predict {model}", attributes=attributes)) as span:
        result = await service.predict(model, body.rows, request.state.request_id, key)
        if span.is_recording():
            served: tracing.Attributes = {
                "llmops.version": result.version,
                "llmops.alias": result.alias,
                "llmops.variant": result.variant,
            }
            span.set_attributes(served)
    return PredictResponse.model_validate(
        {
            "model": result.model,
            "version": result.version,
            "alias": result.alias,
            "variant": result.variant,
            "request_id": result.request_id,
            "predictions": [
                {"label": p.label, "probabilities": p.probabilities} for p in result.predictions
            ],
        }
    )


@router.post(
    "/labels",
    response_model=LabelsResponse,
    responses=documented(400, 404, 413),
    summary="True labels for earlier predictions (by request id and row); late is fine",
)
async def labels(body: LabelsRequest, request: Request) -> LabelsResponse:
    service: ModelService = request.app.state.service
    if service.monitor.log is None:
        raise HTTPException(404, "the prediction log is off (monitoring.predictions.enabled)")
    items = [Label(item.request_id, item.row, item.label) for item in body.labels]
    joined, unknown = await service.label(items)
    if not joined:
        first = unknown[0]
        raise HTTPException(
            404,
            f"no logged prediction for any of the {len(unknown)} label(s), e.g. request "
            f"'{first.request_id}' row {first.row}: unknown, or older than the log's retention",
        )
    return LabelsResponse(
        joined=len(items) - len(unknown),
        unknown=[LabelRef(request_id=u.request_id, row=u.row) for u in unknown],
    )


@router.get("/models", summary="The versions served, their live metrics, drift and retraining")
async def models(request: Request) -> dict[str, Any]:
    service: ModelService = request.app.state.service
    return service.status()


@router.get(
    "/experiments",
    summary="Traffic, rewards, canary ramp and shadow agreement per routing variant",
    responses=documented(404),
)
async def experiments(request: Request) -> dict[str, Any]:
    service: ModelService = request.app.state.service
    report = await service.routing_report()
    if report is None:
        raise HTTPException(404, "no routing: this app serves one alias (add `routing:`)")
    return report


@router.get(
    "/models/{model}/drift",
    summary="Evidently's drift report (HTML) of a served version against its training rows",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}, **documented(404)},
)
async def drift_report(
    model: ModelName,
    request: Request,
    version: int | None = Query(None, ge=1, lt=2**31, description="Default: the serving alias's."),
) -> HTMLResponse:
    service: ModelService = request.app.state.service
    if model != service.name:
        raise HTTPException(404, f"no model '{model}' here; this server serves '{service.name}'")
    number = version or service.status()["version"]
    if number is None:
        raise HTTPException(404, "no version is served yet")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            html, _ = await asyncio.to_thread(service.monitor.drift_report, number, Path(tmp))
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        return HTMLResponse(html.read_text())


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    service: ModelService = request.app.state.service
    body, content_type = service.metrics.render()
    return Response(body, media_type=content_type)


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


def create_model_app(service: ModelService, *, freeze_heap: bool = False) -> FastAPI:
    """The HTTP app of ``service``; starting the app starts it (and its alias following).
    ``freeze_heap``: as for ``create_app`` (``llmops up`` serves one app per process)."""

    traces = Tracing.from_config(service.app.monitoring.tracing, service.name)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.astart()
        if freeze_heap:
            freeze_startup_heap()
        try:
            yield
        finally:
            await service.aclose()
            traces.flush()

    app = FastAPIOffline(
        title=f"llmops model: {service.name}",
        summary="Predictions from the registered version the serving alias points at.",
        version="0.1.0",
        lifespan=lifespan,
        static_url="/docs-assets",
    )
    app.state.service = service
    app.state.registered = service.registered
    app.add_middleware(BodyLimit, max_bytes=service.app.serving.max_body_bytes)
    app.add_middleware(CancelOnDisconnect)
    serving = service.app.serving
    auth.install(app, serving.auth, service.data_dir, serving.host, service.metrics.access_refusal)
    app.add_middleware(RequestId)
    install_cors(app, service.app.serving.cors)  # outside the key check: preflights carry no key
    install_tracing(app, traces)
    errors.install(app)
    app.include_router(model_registry.router)
    app.include_router(router)
    app.include_router(traces_route.router)
    ui.install(app, ui.MODEL_PAGES, check="/models")
    return app
