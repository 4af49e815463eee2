"""The registry as a served app sees it: every registered version of the models it serves (a
model app's model, a RAG app's registered LoRA adapters) with aliases, metrics and tags, and
which of them answer in this process; promote and roll back as ``llmops models promote`` /
``rollback`` do, then serve the result before answering (the alias follower would find the
move within its refresh period; whoever moved the alias here should not have to wait)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from llmops.errors import UnknownModel, UnknownVersion
from llmops.models.registry import PRODUCTION, ModelRegistry, ModelVersion, holder

Served = Callable[[], dict[str, int]]
"""``{reference: version number}`` of what answers in this process now (the serving alias,
or each routing variant's alias or version)."""


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    alias: str  # the serving alias
    headline: str | None  # the metric the app's search maximises: versions compare by it
    served: dict[str, int]
    versions: list[ModelVersion]  # newest first


@dataclass(frozen=True)
class AliasMove:
    """``alias`` of ``model`` moved from version ``before`` to ``version``; ``served`` is what
    answers in this process once the move was served."""

    model: str
    alias: str
    version: int
    before: int | None
    served: dict[str, int]


class RegisteredModels:
    """The registered versions of one model an app serves, and the aliases it follows."""

    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        alias: str,
        headline: str | None,
        served: Served,
        refresh: Callable[[], Awaitable[None]],
    ) -> None:
        self.registry, self.name, self.alias, self.headline = registry, name, alias, headline
        self.served, self.refresh = served, refresh

    async def listing(self) -> list[RegisteredModel]:
        """The served model with its versions (none yet: an empty list, not an error)."""
        try:
            versions = await asyncio.to_thread(self.registry.versions, self.name)
        except UnknownVersion:  # nothing registered under the name yet
            versions = []
        return [RegisteredModel(self.name, self.alias, self.headline, self.served(), versions)]

    async def promote(self, ref: str, to: str) -> AliasMove:
        """Point ``to`` at version ``ref`` (a number or an alias); when ``to`` is
        production, the version that held it gets ``previous``. UnknownVersion for a version
        or alias the registry lacks."""
        return await self._move(to, lambda: self.registry.promote(self.name, ref, to))

    async def rollback(self) -> AliasMove:
        """Production goes back to the ``previous`` version (UnknownVersion when there is
        none: a rollback needs a promotion before it)."""
        return await self._move(PRODUCTION, lambda: self.registry.rollback(self.name))

    async def _move(self, alias: str, move: Callable[[], ModelVersion]) -> AliasMove:
        before = holder(await asyncio.to_thread(self.registry.versions, self.name), alias)
        moved = await asyncio.to_thread(move)
        await self.refresh()
        return AliasMove(self.name, alias, moved.version, before, self.served())


class RegisteredModelSet:
    """The registered models one app serves, by name: what ``GET /models/registry`` lists
    and its promote and rollback routes move (an empty set: the app serves none)."""

    def __init__(self, models: Sequence[RegisteredModels] = ()) -> None:
        self.models = {model.name: model for model in models}

    def __bool__(self) -> bool:
        return bool(self.models)

    async def listing(self) -> list[RegisteredModel]:
        return [listed for model in self.models.values() for listed in await model.listing()]

    async def promote(self, model: str, ref: str, to: str) -> AliasMove:
        """``RegisteredModels.promote`` of ``model``; UnknownModel when this app does not
        serve it."""
        return await self._named(model).promote(ref, to)

    async def rollback(self, model: str) -> AliasMove:
        return await self._named(model).rollback()

    def _named(self, model: str) -> RegisteredModels:
        found = self.models.get(model)
        if found is None:
            served = ", ".join(f"'{name}'" for name in self.models) or "no registered model"
            raise UnknownModel(f"no model '{model}' here; this server serves {served}")
        return found
