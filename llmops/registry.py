"""Components by short name: ``(kind, name) -> Entry``.

Built-in components register with ``@register`` when their package is imported; third-party
packages register through the entry-point group ``llmops.plugins`` (each entry point names a
module or a callable that registers its components). ``llmops.build`` makes every component
the same way: ``factory(settings, **what it asks for of the FactoryContext)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from llmops.deps import available
from llmops.errors import UnknownComponent
from llmops.protocols import TokenCounter

PLUGIN_GROUP = "llmops.plugins"
T = TypeVar("T")


@dataclass(frozen=True)
class FactoryContext:
    """What a component's factory may receive besides its settings. A factory asks for a field
    by naming it as a keyword parameter (``def __init__(self, config, *, data_dir, namespace)``)
    and gets only what it names; one with ``**kwargs`` gets every field."""

    base_dir: Path
    """The config file's folder: relative paths in settings start here (model folders)."""
    data_dir: Path | None = None
    """The app's state folder (indexes, caches)."""
    namespace: str = ""
    """The app's name: stores and indexes name their collections after it."""
    token_counter: TokenCounter | None = None
    """The embedder's own token counter (token-sized chunkers)."""
    adapter_source: Any = None
    """Opens the model registry for ``models:/NAME@ALIAS`` adapters
    (``llmops.models.adapters.RegistryAdapterSource``)."""


@dataclass(frozen=True)
class Entry:
    """A registered component: how to build it and what it needs."""

    kind: str
    name: str
    factory: Callable[..., Any]
    config: type[BaseModel]
    summary: str
    extra: str | None
    requires: tuple[str, ...]

    @property
    def installed(self) -> bool:
        return all(available(module) for module in self.requires)

    def make(self, settings: BaseModel, context: FactoryContext) -> Any:
        """The component, built from its validated ``settings`` and what its factory asks for
        of ``context`` (see ``FactoryContext``)."""
        parameters = inspect.signature(self.factory).parameters.values()
        given = {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            wanted = {p.name for p in parameters}
            given = {name: value for name, value in given.items() if name in wanted}
        return self.factory(settings, **given)


_ENTRIES: dict[tuple[str, str], Entry] = {}
_plugins_loaded = False


def register(
    kind: str,
    name: str,
    *,
    summary: str,
    extra: str | None = None,
    requires: tuple[str, ...] = (),
) -> Callable[[T], T]:
    """Class decorator: register a component whose nested ``Config`` model holds its settings;
    the class is its factory: ``cls(settings, **fields of FactoryContext it names)``."""

    def decorate(cls: T) -> T:
        config = getattr(cls, "Config", None)
        if not (isinstance(config, type) and issubclass(config, BaseModel)):
            raise TypeError(f"{cls!r} must define a nested pydantic `Config` model")
        factory: Callable[..., Any] = cls  # type: ignore[assignment]
        _ENTRIES[(kind, name)] = Entry(kind, name, factory, config, summary, extra, requires)
        return cls

    return decorate


def suggest(name: str, candidates: list[str]) -> str | None:
    """The closest candidate to a misspelt name, if any is close enough."""
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


def get(kind: str, name: str) -> Entry:
    try:
        return _ENTRIES[(kind, name)]
    except KeyError:
        known = names(kind)
        raise UnknownComponent(kind, name, known, suggest(name, known)) from None


def names(kind: str) -> list[str]:
    return sorted(n for k, n in _ENTRIES if k == kind)


def entries() -> list[Entry]:
    return sorted(_ENTRIES.values(), key=lambda e: (e.kind, e.name))


def load_plugins() -> list[str]:
    """Import every ``llmops.plugins`` entry point once; returns their names."""
    global _plugins_loaded
    loaded: list[str] = []
    if _plugins_loaded:
        return loaded
    _plugins_loaded = True
    for point in metadata.entry_points(group=PLUGIN_GROUP):
        target = point.load()
        if callable(target):
            target()
        loaded.append(point.name)
    return loaded
