"""The registered versions a model app serves, by reference (an alias such as ``production``,
or a version number), loaded from the registry and kept current: when an alias moves
(``llmops models promote`` / ``rollback``, or the retraining loop) the next ``refresh`` loads
the version it points at now and swaps it in, without a restart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmops.config.model_app import ModelAppConfig
from llmops.errors import NotReady, RegistryError
from llmops.ml.predict import model_columns
from llmops.models.onnx_model import onnx_model
from llmops.models.registry import ModelRegistry, ModelVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """A loaded version: its registry entry, the fitted model and the columns it takes."""

    version: ModelVersion
    model: Any
    columns: list[str]


Loaded = Callable[[Served], None]
"""Told of each version loaded (to prepare its drift reference, say)."""


class ServedVersions:
    def __init__(self, registry: ModelRegistry, app: ModelAppConfig, on_load: Loaded) -> None:
        self.registry, self.app, self.on_load = registry, app, on_load
        self.name = app.model_name
        self._served: dict[str, Served] = {}
        self._refs: set[str] = set()
        self.errors: dict[str, str] = {}
        self._refreshing = asyncio.Lock()  # the follower's and a promotion's, one at a time

    def follow(self, *refs: str) -> None:
        self._refs.update(refs)

    def unfollow(self, ref: str) -> None:
        self._refs.discard(ref)
        self._served.pop(ref, None)
        self.errors.pop(ref, None)

    def get(self, ref: str) -> Served:
        served = self._served.get(ref)
        if served is None:
            raise NotReady(self.reason(ref))
        return served

    def loaded(self, ref: str) -> bool:
        return ref in self._served

    def reason(self, ref: str) -> str:
        return self.errors.get(ref) or f"no version of '{self.name}' ({ref}) is loaded yet"

    async def refresh(self) -> None:
        """Load what each followed reference points at now (off the event loop); a reference
        that cannot be resolved keeps what it had loaded and records why. Refreshes run one
        at a time, so a slow one cannot swap in a version an alias no longer points at."""
        async with self._refreshing:
            for ref in sorted(self._refs):
                await self._refresh(ref)

    async def _refresh(self, ref: str) -> None:
        try:
            version = await asyncio.to_thread(self.registry.get, self.name, ref)
            current = self._served.get(ref)
            if current is None or current.version.version != version.version:
                await self._load(ref, version, current)
            self.errors.pop(ref, None)
        except RegistryError as exc:
            self.errors[ref] = f"{exc}; run `llmops models promote {self.name}` to serve one"
            log.warning("model registry: %s (still serving what was loaded)", exc)

    def _model(self, version: ModelVersion) -> Any:
        """The version's fitted model; its ONNX export with ``serving.runtime: onnx``."""
        fitted = self.registry.load(self.name, str(version.version))
        if self.app.serving.runtime != "onnx":
            return fitted
        exported = onnx_model(self.registry, version, fitted)
        if exported is None:
            log.warning(
                "version %d has no ONNX export (registry.onnx was off): served by scikit-learn",
                version.version,
            )
            return fitted
        return exported

    async def _load(self, ref: str, version: ModelVersion, current: Served | None) -> None:
        same = next(
            (s for s in self._served.values() if s.version.version == version.version), None
        )
        if same is None:
            model = await asyncio.to_thread(self._model, version)
            same = Served(version, model, model_columns(model, self.app))
            await asyncio.to_thread(self.on_load, same)
        self._served[ref] = Served(version, same.model, same.columns)
        log.warning(
            "serving %s version %d (%s)%s",
            self.name,
            version.version,
            ref,
            f", was {current.version.version}" if current else "",
        )
