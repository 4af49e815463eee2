"""What the config side hands the construction side: the registered component kinds and their
defaults, and ``AppSpec``, an app config validated down to each component's own settings."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from llmops import registry
from llmops.config import LoadedConfig
from llmops.protocols import Loader

BUILTIN_PACKAGES = (
    "llmops.rag.loaders",
    "llmops.rag.chunkers",
    "llmops.rag.embedders",
    "llmops.rag.stores",
    "llmops.rag.sparse",
    "llmops.rag.rerankers",
    "llmops.generation",
    "llmops.ml.estimators",
)
COMPONENT_KINDS = ("chunker", "embedder", "store", "sparse", "reranker", "generator")
DEFAULT_TYPES: dict[str, str | None] = {
    "chunker": "recursive",
    "embedder": "sentence_transformers",
    "store": "chroma",
    "sparse": "bm25",
    "reranker": None,
    "generator": "extractive",
}
_loaded = False
SourceSpec = tuple[Path, list[str], list[str], dict[str, Loader], float]
"""(root, include globs, exclude globs, loader by extension, max_file_mb) of one source."""


def load_components() -> None:
    """Register the built-in components and every installed plugin (once)."""
    global _loaded
    if not _loaded:
        for package in BUILTIN_PACKAGES:
            importlib.import_module(package)
        registry.load_plugins()
        _loaded = True


@dataclass(frozen=True)
class Resolved:
    """A registry entry and its validated settings."""

    entry: registry.Entry
    config: BaseModel


@dataclass(frozen=True)
class AppSpec:
    """A fully validated app config: the app's settings plus each component's settings.

    ``components`` is keyed by section: chunker, embedder, store, sparse and reranker (when
    configured), generator, and ``fallback.<i>`` for the i-th entry of ``fallbacks``; an
    experiment variant's own generator is ``variant.<name>``, its fallbacks
    ``variant.<name>.fallback.<i>``.
    """

    loaded: LoadedConfig
    components: dict[str, Resolved]
    loaders: list[dict[str, Resolved]] = field(default_factory=list)

    @property
    def base_dir(self) -> Path:
        return self.loaded.base_dir
