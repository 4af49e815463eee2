"""``ModelService``: a model app served — the version its alias points at, loaded from the
registry, answering prediction requests micro-batched on one thread, and following the alias:
when ``llmops models promote`` or ``rollback`` moves it, the running service loads the new
version and swaps it in between two batches, without a restart.

    service = ModelService.from_config("configs/adult.yaml")
    await service.astart()
    answer = await service.predict("adult", [{"age": 39, ...}])
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.config import LoadedModelApp, load_model_app_config
from llmops.errors import InvalidRequest, NotReady, RegistryError, UnknownModel
from llmops.ml.batching import MicroBatcher
from llmops.ml.predict import (
    Prediction,
    features_frame,
    model_columns,
    predict_rows,
    rows_frame,
)
from llmops.models.registry import ModelVersion
from llmops.pipelines.train import app_registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """The version answering now, its fitted model and the columns it takes."""

    version: ModelVersion
    model: Any
    columns: list[str]


@dataclass(frozen=True)
class PredictionResult:
    model: str
    version: int
    alias: str
    request_id: str
    predictions: list[Prediction]


class ModelService:
    def __init__(self, loaded: LoadedModelApp) -> None:
        self.loaded = loaded
        self.app = loaded.app
        self.registry = app_registry(loaded)
        self.served: Served | None = None
        self.last_error: str | None = None
        serving = self.app.serving
        self._batcher = MicroBatcher(self._predict_batch, serving.max_batch_rows)
        self._follower: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, path: str | Path) -> ModelService:
        return cls(load_model_app_config(path))

    @property
    def name(self) -> str:
        return self.app.model_name

    @property
    def alias(self) -> str:
        return self.app.serving.alias

    # lifecycle -------------------------------------------------------------------------------
    async def astart(self) -> None:
        """Load the alias's version (when there is one) and start following the alias."""
        if self._follower is not None:
            return
        self._batcher.start()
        await self.refresh()
        self._follower = asyncio.create_task(self._follow())

    async def aclose(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        await asyncio.to_thread(self._batcher.close)

    # work ------------------------------------------------------------------------------------
    async def predict(
        self, model: str, rows: Sequence[Mapping[str, Any]], request_id: str | None = None
    ) -> PredictionResult:
        """Predictions for ``rows``; unknown model, too many or invalid rows raise
        InvalidRequest / InvalidRows, no served version NotReady."""
        if model != self.name:
            raise UnknownModel(f"no model '{model}' here; this server serves '{self.name}'")
        limit = self.app.serving.max_rows
        if len(rows) > limit:
            raise InvalidRequest(
                f"{len(rows)} rows in one request; the limit is {limit} (serving.max_rows)"
            )
        served = self._serving()
        rows_frame(rows, self.app, served.columns)  # raises InvalidRows naming row and column
        predictions = await self._batcher.submit(list(rows))
        return PredictionResult(
            self.name,
            served.version.version,
            self.alias,
            request_id or uuid.uuid4().hex,
            predictions,
        )

    def status(self) -> dict[str, Any]:
        served = self.served
        return {
            "model": self.name,
            "alias": self.alias,
            "version": served.version.version if served else None,
            "run_id": served.version.run_id if served else None,
            "metrics": served.version.metrics if served else {},
            "last_error": self.last_error,
        }

    @property
    def ready(self) -> bool:
        return self.served is not None

    def not_ready_reason(self) -> str:
        return self.last_error or f"no version of '{self.name}' is loaded yet"

    # alias following ---------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Serve the version the alias points at now (loaded off the event loop)."""
        try:
            version = await asyncio.to_thread(self.registry.get, self.name, self.alias)
            if self.served is None or self.served.version.version != version.version:
                model = await asyncio.to_thread(self.registry.load, self.name, self.alias)
                columns = model_columns(model, self.app)
                previous, self.served = self.served, Served(version, model, columns)
                log.warning(
                    "serving %s version %d (%s)%s",
                    self.name,
                    version.version,
                    self.alias,
                    f", was {previous.version.version}" if previous else "",
                )
            self.last_error = None
        except RegistryError as exc:
            self.last_error = f"{exc}; run `llmops models promote {self.name}` to serve one"
            log.warning("model registry: %s (still serving what was loaded)", exc)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.app.serving.refresh_s)
            await self.refresh()

    def _serving(self) -> Served:
        if self.served is None:
            raise NotReady(self.not_ready_reason())
        return self.served

    def _predict_batch(self, rows: list[Mapping[str, Any]]) -> list[Prediction]:
        """Runs on the batching thread: every waiting request's rows in one model call."""
        served = self._serving()  # read once: a swap between batches, never inside one
        return predict_rows(served.model, features_frame(rows, served.columns))
