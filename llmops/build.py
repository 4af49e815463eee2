"""The only place that turns config into components.

``load_config`` validates a YAML file completely (the app's shape and every component's own
settings) and reports every problem at once; ``build`` makes the components without any I/O.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from llmops import registry
from llmops.config import (
    LoadedConfig,
    SourceMap,
    issue_at,
    issues_from_validation,
    load_app_config,
    resolve_path,
)
from llmops.errors import ComponentError, ConfigIssue, UnknownComponent
from llmops.generation.fallback import FallbackChain
from llmops.generation.traced import TracedGenerator
from llmops.models.adapters import RegistryAdapterSource
from llmops.prompts import PromptLibrary, find_prompt_dirs
from llmops.protocols import (
    Chunker,
    Embedder,
    Generator,
    Loader,
    Reranker,
    SparseIndex,
    VectorStore,
)
from llmops.rag.embedders import EncoderThread
from llmops.rag.indexing import RecordTable
from llmops.rag.loaders.directory import default_loaders
from llmops.tracing import Tracing

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


class _Checker:
    """Validates component sections, collecting issues located in the YAML file."""

    def __init__(self, source_map: SourceMap, file: str) -> None:
        self.source_map, self.file = source_map, file
        self.issues: list[ConfigIssue] = []

    def resolve(self, kind: str, raw: Any, loc: tuple[str | int, ...]) -> Resolved | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            return None  # the app schema already reported the shape problem
        try:
            entry = registry.get(kind, raw["type"])
        except UnknownComponent as exc:
            hint = f"allowed: {', '.join(exc.known)}"
            if exc.suggestion:
                hint = f"did you mean '{exc.suggestion}'? " + hint
            self.issues.append(
                issue_at(
                    self.source_map,
                    self.file,
                    (*loc, "type"),
                    f"unknown {kind} type '{exc.name}'",
                    hint,
                )
            )
            return None
        settings = {k: v for k, v in raw.items() if k != "type"}
        try:
            return Resolved(entry, entry.config.model_validate(settings))
        except ValidationError as exc:
            self.issues.extend(
                issues_from_validation(exc, self.source_map, self.file, loc, entry.config)
            )
            return None

    def add(self, loc: tuple[str | int, ...], message: str, hint: str = "") -> None:
        self.issues.append(issue_at(self.source_map, self.file, loc, message, hint))


def check_components(
    data: dict[str, Any], source_map: SourceMap, file: str, base_dir: Path
) -> tuple[list[ConfigIssue], dict[str, Resolved], list[dict[str, Resolved]]]:
    """Validate every component section of raw (interpolated) config data."""
    load_components()
    checker = _Checker(source_map, file)
    components: dict[str, Resolved] = {}
    for kind in COMPONENT_KINDS:
        default = DEFAULT_TYPES[kind]
        raw = data.get(kind, None if default is None else {"type": default})
        if raw is None:
            continue  # an optional component left out (reranker) or switched off (sparse: null)
        resolved = checker.resolve(kind, raw, (kind,))
        if resolved is not None:
            components[kind] = resolved
    for i, raw in enumerate(data.get("fallbacks") or []):
        resolved = checker.resolve("generator", raw, ("fallbacks", i))
        if resolved is not None:
            components[f"fallback.{i}"] = resolved
    for name, variant in _variants(data).items():
        at: tuple[str | int, ...] = ("experiment", "variants", name)
        if variant.get("generator") is not None:
            resolved = checker.resolve("generator", variant["generator"], (*at, "generator"))
            if resolved is not None:
                components[f"variant.{name}"] = resolved
        for i, raw in enumerate(variant.get("fallbacks") or []):
            resolved = checker.resolve("generator", raw, (*at, "fallbacks", i))
            if resolved is not None:
                components[f"variant.{name}.fallback.{i}"] = resolved
    loaders = []
    for i, source in enumerate(data.get("sources") or []):
        overrides = source.get("loaders") if isinstance(source, dict) else None
        found = {}
        for ext, raw in (overrides or {}).items():
            resolved = checker.resolve("loader", raw, ("sources", i, "loaders", ext))
            if resolved is not None:
                found[str(ext).lower()] = resolved
        loaders.append(found)
    _check_prompt(checker, data, base_dir)
    _check_variant_adapters(checker, data, components)
    _check_model_path(checker, components.get("embedder"), base_dir)
    _check_model_path(checker, components.get("reranker"), base_dir)
    return checker.issues, components, loaders


def _variants(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The experiment's variant sections, as far as they are well-formed."""
    experiment = data.get("experiment")
    variants = experiment.get("variants") if isinstance(experiment, dict) else None
    if not isinstance(variants, dict):
        return {}
    return {str(n): v for n, v in variants.items() if isinstance(v, dict)}


def _check_prompt(checker: _Checker, data: dict[str, Any], base_dir: Path) -> None:
    library = PromptLibrary(find_prompt_dirs(base_dir, data.get("prompts_dir")))
    _check_prompt_name(checker, library, data.get("prompt", "answer.v1"), ("prompt",))
    for name, variant in _variants(data).items():
        if isinstance(variant.get("prompt"), str):
            loc = ("experiment", "variants", name, "prompt")
            _check_prompt_name(checker, library, variant["prompt"], loc)


def _check_variant_adapters(
    checker: _Checker, data: dict[str, Any], components: dict[str, Resolved]
) -> None:
    """A variant's ``adapter`` must be one of its generator's ``adapters``."""
    for name, variant in _variants(data).items():
        adapter = variant.get("adapter")
        generator = components.get(f"variant.{name}") or components.get("generator")
        if not isinstance(adapter, str) or generator is None:
            continue
        known = getattr(generator.config, "adapters", None)
        if known is None:
            checker.add(
                ("experiment", "variants", name, "adapter"),
                f"the {generator.entry.name} generator serves no LoRA adapters",
                "use an hf_local generator with `adapters: {name: folder or models:/NAME@ALIAS}`",
            )
        elif adapter not in known:
            checker.add(
                ("experiment", "variants", name, "adapter"),
                f"no adapter '{adapter}' in the generator's adapters",
                f"known: {', '.join(sorted(known)) or 'none'}",
            )


def _check_prompt_name(
    checker: _Checker, library: PromptLibrary, name: Any, loc: tuple[str | int, ...]
) -> None:
    try:
        library.check(str(name))
    except ComponentError as exc:
        checker.add(loc, str(exc), "put <name>.j2 in prompts/ or set prompts_dir")


_MODEL_HINTS = {
    "embedder": "use 'bundled' (all-MiniLM-L6-v2) or a local model folder; nothing is downloaded",
    "reranker": "download a cross-encoder where there is internet (`hf download "
    "cross-encoder/ms-marco-MiniLM-L-6-v2 --local-dir DIR`) and set model to DIR; "
    "nothing is downloaded",
}


def _check_model_path(checker: _Checker, resolved: Resolved | None, base_dir: Path) -> None:
    """An embedder's model may also be a name in the local Hugging Face cache; a reranker's
    is always a folder."""
    model = getattr(resolved.config, "model", None) if resolved else None
    if resolved is None or not isinstance(model, str):
        return
    kind = resolved.entry.kind
    if kind == "embedder" and model == "bundled":
        return
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1
    if (looks_like_path or kind == "reranker") and not resolve_path(base_dir, model).exists():
        checker.add(
            (kind, "model"),
            f"model folder not found: {resolve_path(base_dir, model)}",
            _MODEL_HINTS.get(kind, "use a local model folder; nothing is downloaded"),
        )


def load_config(path: str | Path) -> AppSpec:
    """Read and validate an app config; raises ConfigError listing every problem."""
    holder: dict[str, Any] = {}

    def extra_checks(
        data: dict[str, Any], source_map: SourceMap, file: str, base_dir: Path
    ) -> list[ConfigIssue]:
        issues, holder["components"], holder["loaders"] = check_components(
            data, source_map, file, base_dir
        )
        return issues

    loaded = load_app_config(path, extra_checks=extra_checks)
    return AppSpec(loaded, holder["components"], holder["loaders"])


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
    fingerprint: str
    variant_generators: dict[str, Generator] = field(default_factory=dict)
    """Generators of experiment variants that configure their own (others use ``generator``)."""
    backends: list[Generator] = field(default_factory=list)
    """Every generator backend of the app and its variants, unwrapped (no fallback chain, no
    tracing): what the registry page asks which registered adapters they follow."""
    tracing: Tracing = field(default_factory=Tracing)
    """Spans of queries and ingestions (``monitoring.tracing``; a no-op tracer when off)."""
    embed_model: str = ""
    """The embedding model's name, for spans."""

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


def check_component(
    kind: str, raw: Any, loc: tuple[str | int, ...], source_map: SourceMap, file: str
) -> tuple[Resolved | None, list[ConfigIssue]]:
    """Validate one component section of another YAML file (an eval suite's judge)."""
    load_components()
    checker = _Checker(source_map, file)
    return checker.resolve(kind, raw, loc), checker.issues


def make_generator(resolved: Resolved, base_dir: Path) -> Generator:
    """A generator from a section ``check_component`` validated (not started)."""
    return _make_generator(resolved, base_dir)


def _make(resolved: Resolved, **kwargs: Any) -> Any:
    return resolved.entry.factory(resolved.config, **kwargs)


def _make_generator(resolved: Resolved, base_dir: Path) -> Generator:
    """A generator; one that reads local files (``hf_local``) also gets the config's folder,
    one that serves registered adapters the way to open the model registry."""
    wanted = inspect.signature(resolved.entry.factory).parameters
    context: dict[str, Any] = {"base_dir": base_dir, "adapter_source": RegistryAdapterSource}
    return _make(resolved, **{key: value for key, value in context.items() if key in wanted})


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
    generator = _make_generator(resolved, spec.base_dir)
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
    embedder = EncoderThread(_make(spec.components["embedder"], base_dir=spec.base_dir))
    sources = []
    for source, overrides in zip(app.sources, spec.loaders, strict=True):
        loaders = {**default_loaders(), **{ext: _make(r) for ext, r in overrides.items()}}
        root = resolve_path(spec.base_dir, source.path)
        sources.append((root, source.include, source.exclude, loaders, source.max_file_mb))
    chunker = _make(spec.components["chunker"], token_counter=embedder.count_tokens)
    return IngestParts(sources, chunker, embedder)


def build(spec: AppSpec) -> Components:
    """Instantiate every component of a validated app (cheap: no I/O, no model loading)."""
    app = spec.loaded.app
    data_dir = resolve_path(spec.base_dir, app.data_dir)
    tracing = Tracing.from_config(app.monitoring.tracing, app.name)
    parts = build_ingest_parts(spec)
    embedder = parts.embedder
    backends: list[Generator] = []
    return Components(
        sources=parts.sources,
        chunker=parts.chunker,
        embedder=embedder,
        store=_make(spec.components["store"], data_dir=data_dir, namespace=app.name),
        sparse=_optional(spec, "sparse", data_dir=data_dir, namespace=app.name),
        reranker=_optional(spec, "reranker", base_dir=spec.base_dir),
        generator=_generator(spec, tracing, backends),
        prompts=PromptLibrary(find_prompt_dirs(spec.base_dir, app.prompts_dir)),
        records=RecordTable(data_dir / "records.sqlite"),
        data_dir=data_dir,
        fingerprint=_fingerprint(spec, embedder),
        variant_generators=_variant_generators(spec, tracing, backends),
        backends=backends,
        tracing=tracing,
        embed_model=_model(spec.components["embedder"]),
    )


def _optional(spec: AppSpec, kind: str, **kwargs: Any) -> Any:
    resolved = spec.components.get(kind)
    return None if resolved is None else _make(resolved, **kwargs)


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


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of app configs, with each component section listing every registered type."""
    from llmops.config.schema import AppConfig

    load_components()
    schema = AppConfig.model_json_schema(by_alias=True)
    for kind in ("loader", *COMPONENT_KINDS):
        variants = []
        for name in registry.names(kind):
            entry = registry.get(kind, name)
            sub = entry.config.model_json_schema(by_alias=True)
            sub.setdefault("properties", {})["type"] = {"const": name, "description": entry.summary}
            sub["required"] = ["type", *sub.get("required", [])]
            sub["additionalProperties"] = False
            sub["title"] = f"{kind}: {name}"
            variants.append(sub)
        schema.setdefault("$defs", {})[f"{kind}_component"] = {"oneOf": variants}
        if kind in schema["properties"]:
            schema["properties"][kind] = {"$ref": f"#/$defs/{kind}_component"}
    source = schema["$defs"]["SourceConfig"]["properties"]["loaders"]
    source["additionalProperties"] = {"$ref": "#/$defs/loader_component"}
    return schema
