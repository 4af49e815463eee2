"""Construction: ``build`` turns a validated ``AppSpec`` into the app's components without any
I/O (nothing opened, no model loaded); ``start`` on the result does that."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llmops.build.spec import AppSpec, Resolved, SourceSpec
from llmops.config import resolve_path
from llmops.generation.fallback import FallbackChain
from llmops.generation.traced import TracedGenerator
from llmops.models.adapters import RegistryAdapterSource
from llmops.prompts import PromptLibrary, find_prompt_dirs
from llmops.protocols import Chunker, Embedder, Generator, Reranker, SparseIndex, VectorStore
from llmops.rag.embedders import EncoderThread
from llmops.rag.indexing import RecordTable
from llmops.rag.loaders.directory import default_loaders
from llmops.registry import FactoryContext
from llmops.tracing import Tracing


@dataclass
class Components:
    """Everything an app is made of, built but not started."""

    sources: list[SourceSpec]
    chunker: Chunker
    embedder: EncoderThread
    store: VectorStore
    sparse: SparseIndex | None
    reranker: Reranker | None
    generator: Generator
    prompts: PromptLibrary
    records: RecordTable
    data_dir: Path
    fingerprint_of: Callable[[], str]
    """Computes ``fingerprint`` (it may read the model folder: not at build time)."""
    variant_generators: dict[str, Generator] = field(default_factory=dict)
    """Generators of experiment variants that configure their own (others use ``generator``)."""
    backends: list[Generator] = field(default_factory=list)
    """Every generator backend of the app and its variants, unwrapped (no fallback chain, no
    tracing): what the registry page asks which registered adapters they follow."""
    tracing: Tracing = field(default_factory=Tracing)
    """Spans of queries and ingestions (``monitoring.tracing``; a no-op tracer when off)."""
    embed_model: str = ""
    """The embedding model's name, for spans."""

    @functools.cached_property
    def fingerprint(self) -> str:
        """Everything that changes chunk boundaries, vectors or the keyword index (computed at
        first use)."""
        return self.fingerprint_of()

    def start(self, models: bool = True) -> None:
        """Open the record table and the indexes, load the models (the generator, async, is
        started by its owner). ``models=False`` (an ingestion) leaves them to ``load_models``,
        and the embedding model to its first use: an ingestion that finds nothing changed
        loads no model and imports no model library."""
        self.records.open()
        self.store.start()
        if self.sparse is not None:
            self.sparse.start()
        self.embedder.start(load=False)
        if models:
            self.load_models()

    def load_models(self) -> None:
        """Load the embedding model and the reranker (after ``start``; idempotent)."""
        self.embedder.load()
        if self.reranker is not None:
            self.embedder.run(self.reranker.start)  # torch models share the encoder thread

    def close(self) -> None:
        """Undo ``start``, in reverse order."""
        if self.reranker is not None:
            self.embedder.run(self.reranker.close)
        self.embedder.close()
        if self.sparse is not None:
            self.sparse.close()
        self.store.close()
        self.records.close()
        self.tracing.flush()


def make_generator(resolved: Resolved, base_dir: Path) -> Generator:
    """A generator from a section ``check_component`` validated (not started)."""
    return _make(resolved, FactoryContext(base_dir, adapter_source=RegistryAdapterSource))


def factory_context(spec: AppSpec) -> FactoryContext:
    """What the app's component factories may ask for (``registry.FactoryContext``); the
    chunker's token counter is added once the embedder exists."""
    app = spec.loaded.app
    return FactoryContext(
        base_dir=spec.base_dir,
        data_dir=resolve_path(spec.base_dir, app.data_dir),
        namespace=app.name,
        adapter_source=RegistryAdapterSource,
    )


def _make(resolved: Resolved, context: FactoryContext) -> Any:
    return resolved.entry.make(resolved.config, context)


def _chain(
    spec: AppSpec,
    primary: str,
    fallbacks: Sequence[str],
    tracing: Tracing,
    backends: list[Generator],
) -> Generator:
    """The generator of section ``primary``, in a fallback chain with those of ``fallbacks``;
    with tracing on, each one's calls are spans. Each backend made is added to ``backends``."""
    keys = [primary, *fallbacks]
    chain = [_traced(spec, key, pos, tracing, backends) for pos, key in enumerate(keys)]
    return chain[0] if len(chain) == 1 else FallbackChain(chain)


def _traced(
    spec: AppSpec, key: str, position: int, tracing: Tracing, backends: list[Generator]
) -> Generator:
    resolved = spec.components[key]
    generator = _make(resolved, factory_context(spec))
    backends.append(generator)
    if not tracing.enabled:
        return generator
    provider = resolved.entry.name
    return TracedGenerator(generator, tracing.tracer, provider, _model(resolved), position)


def _model(resolved: Resolved) -> str:
    """The model a component's config names (its type when it names none), for spans."""
    return str(getattr(resolved.config, "model", None) or resolved.entry.name)


def _generator(spec: AppSpec, tracing: Tracing, backends: list[Generator]) -> Generator:
    """The configured generator, wrapped in a fallback chain when fallbacks are configured."""
    return _chain(spec, "generator", _app_fallbacks(spec), tracing, backends)


def _app_fallbacks(spec: AppSpec) -> list[str]:
    return [f"fallback.{i}" for i in range(len(spec.loaded.app.fallbacks))]


def _variant_generators(
    spec: AppSpec, tracing: Tracing, backends: list[Generator]
) -> dict[str, Generator]:
    """Each experiment variant that sets its own generator: it, in a chain with its own
    fallbacks or else the app's."""
    experiment = spec.loaded.app.experiment
    if experiment is None:
        return {}
    generators = {}
    for name, variant in experiment.variants.items():
        if variant.generator is None:
            continue
        fallbacks = (
            _app_fallbacks(spec)
            if variant.fallbacks is None
            else [f"variant.{name}.fallback.{i}" for i in range(len(variant.fallbacks))]
        )
        generators[name] = _chain(spec, f"variant.{name}", fallbacks, tracing, backends)
    return generators


@dataclass
class IngestParts:
    """What turns source files into embedded chunks, without any index: what an ingestion
    worker on another machine (a Ray actor) builds from the same validated config."""

    sources: list[SourceSpec]
    chunker: Chunker
    embedder: EncoderThread


def build_ingest_parts(spec: AppSpec) -> IngestParts:
    """The sources (with their loaders), the chunker and the embedder (cheap: nothing loaded)."""
    app = spec.loaded.app
    context = factory_context(spec)
    embedder = EncoderThread(_make(spec.components["embedder"], context))
    sources = []
    for source, overrides in zip(app.sources, spec.loaders, strict=True):
        loaders = {**default_loaders(), **{ext: _make(r, context) for ext, r in overrides.items()}}
        root = resolve_path(spec.base_dir, source.path)
        sources.append((root, source.include, source.exclude, loaders, source.max_file_mb))
    with_counter = replace(context, token_counter=embedder.count_tokens)
    chunker = _make(spec.components["chunker"], with_counter)
    return IngestParts(sources, chunker, embedder)


def build(spec: AppSpec) -> Components:
    """Instantiate every component of a validated app (cheap: no I/O, no model loading)."""
    app = spec.loaded.app
    context = factory_context(spec)
    data_dir = resolve_path(spec.base_dir, app.data_dir)
    tracing = Tracing.from_config(app.monitoring.tracing, app.name)
    parts = build_ingest_parts(spec)
    embedder = parts.embedder
    backends: list[Generator] = []
    return Components(
        sources=parts.sources,
        chunker=parts.chunker,
        embedder=embedder,
        store=_make(spec.components["store"], context),
        sparse=_optional(spec, "sparse", context),
        reranker=_optional(spec, "reranker", context),
        generator=_generator(spec, tracing, backends),
        prompts=PromptLibrary(find_prompt_dirs(spec.base_dir, app.prompts_dir)),
        records=RecordTable(data_dir / "records.sqlite"),
        data_dir=data_dir,
        fingerprint_of=functools.partial(_fingerprint, spec, embedder),
        variant_generators=_variant_generators(spec, tracing, backends),
        backends=backends,
        tracing=tracing,
        embed_model=_model(spec.components["embedder"]),
    )


def _optional(spec: AppSpec, kind: str, context: FactoryContext) -> Any:
    resolved = spec.components.get(kind)
    return None if resolved is None else _make(resolved, context)


def _fingerprint(spec: AppSpec, embedder: Embedder) -> str:
    """Everything that changes chunk boundaries, vectors or the keyword index; a change forces
    a full rebuild."""
    chunker, sparse = spec.components["chunker"], spec.components.get("sparse")
    parts = {
        "chunker": [chunker.entry.name, chunker.config.model_dump(mode="json")],
        "embedder": embedder.fingerprint,
        "sparse": sparse and [sparse.entry.name, sparse.config.model_dump(mode="json")],
        "loaders": [
            {ext: [r.entry.name, r.config.model_dump(mode="json")] for ext, r in sorted(f.items())}
            for f in spec.loaders
        ],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
