"""Validation: ``load_config`` checks a YAML file completely (the app's shape and every
component's own settings, prompts, adapters and model folders) and reports every problem at
once, each located at its file, line and key. Nothing here constructs a component."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmops import registry
from llmops.build.spec import COMPONENT_KINDS, DEFAULT_TYPES, AppSpec, Resolved, load_components
from llmops.config import SourceMap, issue_at, issues_from_validation, load_app_config, resolve_path
from llmops.errors import ComponentError, ConfigIssue, UnknownComponent
from llmops.prompts import PromptLibrary, find_prompt_dirs


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


def check_component(
    kind: str, raw: Any, loc: tuple[str | int, ...], source_map: SourceMap, file: str
) -> tuple[Resolved | None, list[ConfigIssue]]:
    """Validate one component section of another YAML file (an eval suite's judge)."""
    load_components()
    checker = _Checker(source_map, file)
    return checker.resolve(kind, raw, loc), checker.issues


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
