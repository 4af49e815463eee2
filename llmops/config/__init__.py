"""Config files: YAML with positions, ``${ENV}`` interpolation, secrets from the environment,
the app schema, and error reports that list every problem as ``file:line:col  key  message``.
Imports no domain package, so validation needs no heavy library."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmops.config.finetune import FinetuneConfig, path_problems
from llmops.config.interpolate import Interpolator, mask_secrets
from llmops.config.model_app import ModelAppConfig
from llmops.config.report import issue_at, issues_from_validation
from llmops.config.schema import AppConfig, RetrievalConfig
from llmops.config.yaml_source import Loc, SourceMap, load_yaml, read_yaml
from llmops.errors import ConfigError, ConfigIssue

__all__ = [
    "AppConfig",
    "ExtraChecks",
    "FinetuneConfig",
    "LoadedConfig",
    "LoadedFinetune",
    "LoadedModelApp",
    "ModelAppConfig",
    "SourceMap",
    "config_kind",
    "issue_at",
    "issues_from_validation",
    "load_app_config",
    "load_finetune_config",
    "load_model_app_config",
    "mask_secrets",
    "read_yaml",
    "resolve_path",
]

ExtraChecks = Callable[[dict[str, Any], SourceMap, str, Path], list[ConfigIssue]]


@dataclass(frozen=True)
class LoadedConfig:
    """A validated app config and what is needed to locate and resolve its values."""

    app: AppConfig
    data: dict[str, Any]  # after interpolation, before defaults
    source_map: SourceMap
    file: str  # the path as given
    base_dir: Path  # the config file's folder, resolved
    secret_paths: frozenset[Loc] = frozenset()  # for ``mask_secrets(..., secret_paths)``


def resolve_path(base_dir: Path, value: str | Path) -> Path:
    """A path from the config: ``~`` expanded, relative to the config file's folder."""
    return (base_dir / os.path.expanduser(value)).resolve()


def _validate(
    data: dict[str, Any], smap: SourceMap, file: str
) -> tuple[AppConfig | None, list[ConfigIssue]]:
    try:
        return AppConfig.model_validate(data), []
    except ValidationError as exc:
        return None, issues_from_validation(exc, smap, file, (), AppConfig)


def _source_issues(
    data: dict[str, Any], smap: SourceMap, file: str, base: Path
) -> list[ConfigIssue]:
    sources = data.get("sources")
    issues = []
    for i, source in enumerate(sources if isinstance(sources, list) else []):
        if isinstance(source, dict) and isinstance(source.get("path"), str):
            path = resolve_path(base, source["path"])
            if not path.exists():
                issues.append(
                    issue_at(
                        smap,
                        file,
                        ("sources", i, "path"),
                        f"source path does not exist: {path}",
                        f"paths are relative to the config file's folder ({base})",
                    )
                )
    return issues


def _retrieval_issues(data: dict[str, Any], smap: SourceMap, file: str) -> list[ConfigIssue]:
    """Cross-field checks of ``retrieval``; run even when other sections have problems."""
    try:
        retrieval = RetrievalConfig.model_validate(data.get("retrieval", {}))
    except ValidationError:
        return []  # already reported by the app validation
    problems: list[tuple[tuple[str, ...], str, str]] = []
    mmr = retrieval.mmr
    if mmr.enabled and mmr.fetch_k < retrieval.top_k:
        problems.append(
            (
                ("retrieval", "mmr", "fetch_k"),
                f"fetch_k ({mmr.fetch_k}) must be at least top_k ({retrieval.top_k})",
                "MMR picks top_k results out of fetch_k candidates",
            )
        )
    if retrieval.candidates < retrieval.top_k:
        problems.append(
            (
                ("retrieval", "candidates"),
                f"candidates ({retrieval.candidates}) must be at least top_k ({retrieval.top_k})",
                "each search path contributes this many hits before fusion",
            )
        )
    if data.get("sparse", "bm25") is None and retrieval.mode != "dense":
        problems.append(
            (
                ("retrieval", "mode"),
                f"retrieval.mode '{retrieval.mode}' needs a sparse index, but sparse is null",
                "set retrieval.mode: dense, or remove 'sparse: null' (default: bm25)",
            )
        )
    return [issue_at(smap, file, loc, message, hint) for loc, message, hint in problems]


@dataclass
class _Read:
    """A config file read and interpolated, with the problems found so far."""

    data: dict[str, Any]
    source_map: SourceMap
    issues: list[ConfigIssue]
    interpolator: Interpolator
    file: str
    base_dir: Path


def _read(path: str | Path) -> _Read:
    file = str(path)
    raw, smap, issues = load_yaml(Path(path), file)
    interpolator = Interpolator()
    data = interpolator.resolve(raw)
    issues += [issue_at(smap, file, loc, msg, hint) for loc, msg, hint in interpolator.problems]
    return _Read(data, smap, issues, interpolator, file, Path(path).resolve().parent)


def config_kind(path: str | Path) -> str:
    """``model`` for a model app (``kind: model``), ``finetune`` for a fine-tuning job
    (``kind: finetune``), else ``rag``; an unreadable file raises."""
    raw, _, _ = load_yaml(Path(path), str(path))
    kind = raw.get("kind")
    return kind if kind in ("model", "finetune") else "rag"


@dataclass(frozen=True)
class LoadedFinetune:
    """A validated fine-tuning job (``kind: finetune``), located like ``LoadedConfig``."""

    job: FinetuneConfig
    file: str
    base_dir: Path

    def path(self, value: str) -> Path:
        return resolve_path(self.base_dir, value)


def load_finetune_config(path: str | Path) -> LoadedFinetune:
    """Read, interpolate and validate a fine-tuning job; raises ConfigError with every problem
    (a missing base model folder or data file, a missing chat template), each located."""
    read = _read(path)
    missing = [
        issue_at(read.source_map, read.file, loc, message, hint)
        for loc, message, hint in path_problems(read.data, read.base_dir)
    ]
    return LoadedFinetune(_validated(read, FinetuneConfig, missing), read.file, read.base_dir)


@dataclass(frozen=True)
class LoadedModelApp:
    """A validated model app config, located like ``LoadedConfig``."""

    app: ModelAppConfig
    file: str
    base_dir: Path


def load_model_app_config(path: str | Path) -> LoadedModelApp:
    """Read, interpolate and validate a model app config (``kind: model``); raises ConfigError
    with every problem, each located in the file."""
    read = _read(path)
    app = _validated(read, ModelAppConfig, _data_path_issues(read))
    return LoadedModelApp(app, read.file, read.base_dir)


Shape = TypeVar("Shape", bound=BaseModel)


def _validated(read: _Read, shape: type[Shape], more: list[ConfigIssue]) -> Shape:
    """``read``'s data as ``shape``; ConfigError with every problem (the file's, the model's
    and ``more``), in file order."""
    issues = [*read.issues, *more]
    try:
        value = shape.model_validate(read.data)
    except ValidationError as exc:
        issues += issues_from_validation(exc, read.source_map, read.file, (), shape)
    if issues:
        raise ConfigError(sorted(issues, key=lambda i: (i.line, i.col, i.path)))
    return value


def _data_path_issues(read: _Read) -> list[ConfigIssue]:
    data = read.data.get("data")
    issues = []
    for part in ("train", "test"):
        source = data.get(part) if isinstance(data, dict) else None
        if isinstance(source, dict) and isinstance(source.get("path"), str):
            path = resolve_path(read.base_dir, source["path"])
            if not path.is_file():
                issues.append(
                    issue_at(
                        read.source_map,
                        read.file,
                        ("data", part, "path"),
                        f"data file does not exist: {path}",
                        f"paths are relative to the config file's folder ({read.base_dir})",
                    )
                )
    return issues


def load_app_config(path: str | Path, extra_checks: ExtraChecks | None = None) -> LoadedConfig:
    """Read, interpolate and validate an app config; raises ConfigError with every problem.

    Each stage runs even when an earlier one found problems (an unset variable reads as "").
    ``extra_checks`` validates what this package cannot see (component settings); its
    issues are reported together with the rest.
    """
    read = _read(path)
    data, smap, issues, interpolator = read.data, read.source_map, read.issues, read.interpolator
    file, base_dir = read.file, read.base_dir
    app, validation_issues = _validate(data, smap, file)
    issues += validation_issues
    issues += _source_issues(data, smap, file, base_dir)
    issues += _retrieval_issues(data, smap, file)
    if extra_checks is not None:
        issues += extra_checks(data, smap, file, base_dir)
    if issues or app is None:
        raise ConfigError(sorted(issues, key=lambda i: (i.line, i.col, i.path)))
    secrets = frozenset(interpolator.secret_paths)
    return LoadedConfig(app, data, smap, file, base_dir, secrets)
