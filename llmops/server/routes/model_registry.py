"""The registry face of an app (a model app's model, a RAG app's registered LoRA adapters:
``app.state.registered``): ``GET /models/registry`` (every registered version with its
aliases, metrics and tags, the ones answering here marked) and ``POST
/models/{model}/promote`` / ``rollback``, which move an alias as ``llmops models promote`` /
``rollback`` do and serve the result in this process before they answer. Moving an alias
needs the ``admin`` scope (``auth.scope_for``); reading needs ``models``."""

from __future__ import annotations

import re
from typing import Annotated, Self

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, field_validator, model_validator

from llmops.models.registry import CANDIDATE, PRODUCTION, ModelVersion
from llmops.pipelines.registered_models import AliasMove, RegisteredModel, RegisteredModelSet
from llmops.server.errors import documented
from llmops.server.schemas import AS_INTEGER, STRICT

router = APIRouter(tags=["models"])

ModelName = Annotated[str, PathParam(max_length=200, description="The served model's name.")]
MAX_ALIAS_CHARS = 255  # MLflow's limit
Number = Annotated[int, Field(ge=1, lt=2**31), AS_INTEGER]
NumberText = Annotated[str, Field(max_length=10, pattern=r"^[1-9][0-9]{0,9}$")]
Reference = Annotated[str, Field(min_length=1, max_length=MAX_ALIAS_CHARS, pattern=r"^[\w-]+$")]
AliasName = Annotated[
    str, Field(min_length=1, max_length=MAX_ALIAS_CHARS, pattern=r"^[A-Za-z_][\w-]*$")
]
_RESERVED = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)  # MLflow refuses these aliases


class PromoteRequest(BaseModel):
    model_config = STRICT
    version: Number | NumberText | None = Field(
        None, description='The version number to promote (3 or "3").'
    )
    ref: Reference | None = Field(
        None,
        description="Or a reference: an alias (candidate), a version number or latest. "
        "Neither: the candidate.",
    )
    to: AliasName = Field(
        PRODUCTION,
        description="The alias to point at it. Promoting to production gives the version "
        "that held it the alias previous (what a rollback restores).",
    )

    @field_validator("to")
    @classmethod
    def _not_reserved(cls, to: str) -> str:
        if _RESERVED.match(to):
            raise ValueError(f"'{to}' is reserved by MLflow (latest, v<number>); choose another")
        return to

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.version is not None and self.ref is not None:
            raise ValueError("give version or ref, not both")
        return self

    def source(self) -> str:
        """The version or alias to promote."""
        return str(self.version) if self.version is not None else self.ref or CANDIDATE


class VersionOut(BaseModel):
    version: int
    created: float = Field(description="When it was registered, epoch seconds.")
    run_id: str = Field(description="The MLflow run that logged it.")
    aliases: list[str]
    metrics: dict[str, float] = Field(description="Its test metrics (the metric.* tags).")
    tags: dict[str, str]
    served_as: list[str] = Field(
        description="The references answering with this version in this process (the "
        "serving alias, routing variants' aliases or numbers); empty: not served here."
    )


class RegisteredModelOut(BaseModel):
    name: str
    alias: str = Field(
        description="The serving alias: /predict (a model app) or the LoRA adapter following "
        "it (a RAG app) answers with its version."
    )
    headline: str | None = Field(description="The metric the app's search maximises.")
    served: dict[str, int] = Field(description="Reference → the version answering for it.")
    versions: list[VersionOut] = Field(description="Newest first.")


class RegistryOut(BaseModel):
    models: list[RegisteredModelOut]


class AliasMoveOut(BaseModel):
    model: str
    alias: str = Field(description="The alias moved.")
    version: int = Field(description="The version it points at now.")
    before: int | None = Field(description="The version it pointed at before (None: none).")
    served: dict[str, int] = Field(description="What answers in this process now.")


@router.get(
    "/models/registry",
    response_model=RegistryOut,
    responses=documented(),
    summary="Every registered version: aliases, metrics, tags, and which ones answer here",
)
async def registry(request: Request) -> RegistryOut:
    registered: RegisteredModelSet = request.app.state.registered
    return RegistryOut(models=[_model_out(m) for m in await registered.listing()])


@router.post(
    "/models/{model}/promote",
    response_model=AliasMoveOut,
    responses=documented(400, 404, 413),  # FastAPI documents the 422 (a list of problems)
    summary="Point an alias at a version (admin); the server answers with it at once",
)
async def promote(model: ModelName, body: PromoteRequest, request: Request) -> AliasMoveOut:
    registered: RegisteredModelSet = request.app.state.registered
    return _move_out(await registered.promote(model, body.source(), body.to))


@router.post(
    "/models/{model}/rollback",
    response_model=AliasMoveOut,
    responses=documented(404),
    summary="Put the previous version back in production (admin), served at once",
)
async def rollback(model: ModelName, request: Request) -> AliasMoveOut:
    registered: RegisteredModelSet = request.app.state.registered
    return _move_out(await registered.rollback(model))


def _model_out(model: RegisteredModel) -> RegisteredModelOut:
    return RegisteredModelOut(
        name=model.name,
        alias=model.alias,
        headline=model.headline,
        served=model.served,
        versions=[_version_out(v, model.served) for v in model.versions],
    )


def _version_out(version: ModelVersion, served: dict[str, int]) -> VersionOut:
    return VersionOut(
        version=version.version,
        created=version.created,
        run_id=version.run_id,
        aliases=list(version.aliases),
        metrics=version.metrics,
        tags=dict(version.tags),
        served_as=sorted(ref for ref, number in served.items() if number == version.version),
    )


def _move_out(move: AliasMove) -> AliasMoveOut:
    return AliasMoveOut.model_validate(move, from_attributes=True)
