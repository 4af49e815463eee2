"""The registered LoRA adapters a RAG app serves, as the registry page sees them.

A generator that follows ``models:/NAME@ALIAS`` adapters (``hf_local``'s ``adapters``) meets
``FollowsAdapters``; each registered model any of the app's backends follows (the app's
generator, its fallbacks, experiment variants' own) becomes one ``RegisteredModels``: its
versions and aliases from the generator's registry, which version answers for each alias
followed, and promote / rollback that every generator following the model serves at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from llmops.models.registry import PRODUCTION, ModelRegistry
from llmops.pipelines.registered_models import RegisteredModels, RegisteredModelSet


@runtime_checkable
class FollowsAdapters(Protocol):
    """A generator serving registered adapters (``HFLocalGenerator``)."""

    def registered_refs(self) -> dict[str, tuple[str, str]]:
        """``{adapter: (registered model, alias or version followed)}``."""
        ...

    def adapter_status(self) -> dict[str, dict[str, Any]]:
        """``{adapter: {"version": the version serving, ...}}`` once started."""
        ...

    async def refresh_adapters(self) -> list[str]:
        """Serve the versions the followed aliases point at now."""
        ...

    def registry_uri(self) -> str: ...


def registered_adapters(backends: Iterable[object]) -> RegisteredModelSet:
    """The registered models that ``backends`` follow (an empty set when none does)."""
    followers: dict[str, list[FollowsAdapters]] = {}
    for backend in backends:
        if isinstance(backend, FollowsAdapters):
            for model in sorted({model for model, _ in backend.registered_refs().values()}):
                followers.setdefault(model, []).append(backend)
    return RegisteredModelSet([_registered(model, found) for model, found in followers.items()])


def _registered(model: str, followers: list[FollowsAdapters]) -> RegisteredModels:
    refs = sorted(
        {ref for f in followers for name, ref in f.registered_refs().values() if name == model}
    )
    alias = PRODUCTION if PRODUCTION in refs else refs[0]

    def served() -> dict[str, int]:
        """Each followed alias (or version) → the version answering for it here."""
        answering = {}
        for follower in followers:
            status = follower.adapter_status()
            for adapter, (name, ref) in follower.registered_refs().items():
                version = status.get(adapter, {}).get("version")
                if name == model and version is not None:
                    answering[ref] = int(version)
        return answering

    async def refresh() -> None:
        for follower in followers:
            await follower.refresh_adapters()

    registry = ModelRegistry(followers[0].registry_uri())
    return RegisteredModels(registry, model, alias, None, served, refresh)
