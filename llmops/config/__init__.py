"""Config files: YAML with positions, ``${ENV}`` interpolation, secrets from the environment,
the app schema, and error reports that list every problem as ``file:line:col  key  message``.
Imports no domain package, so validation needs no heavy library."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmops.config.interpolate import Interpolator, mask_secrets
from llmops.config.report import issue_at, issues_from_validation
from llmops.config.schema import AppConfig
from llmops.config.yaml_source import SourceMap, read_yaml
from llmops.errors import ConfigError, ConfigIssue

__all__ = [
    "AppConfig",
    "LoadedConfig",
    "SourceMap",
    "issue_at",
    "issues_from_validation",
    "load_app_config",
    "mask_secrets",
    "read_yaml",
    "resolve_path",
]

ExtraChecks = Callable[[dict[str, Any], SourceMap, str, Path], list[ConfigIssue]]


@dataclass(frozen=True)
class LoadedConfig:
    app: AppConfig
    data: dict[str, Any]
    source_map: SourceMap
    file: str
    base_dir: Path


def resolve_path(base_dir: Path, value: str) -> Path:
    """A path from the config: ``~`` expanded, relative to the config file's folder."""
    return (base_dir / os.path.expanduser(value)).resolve()


def _source_issues(
    data: dict[str, Any], smap: SourceMap, file: str, base: Path
) -> list[ConfigIssue]:
    issues = []
    for i, source in enumerate(data.get("sources") or []):
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


def _retrieval_issues(app: AppConfig, smap: SourceMap, file: str) -> list[ConfigIssue]:
    retrieval = app.retrieval
    if retrieval.mmr.enabled and retrieval.mmr.fetch_k < retrieval.top_k:
        return [
            issue_at(smap, file, ("retrieval", "mmr", "fetch_k"),
                     f"fetch_k ({retrieval.mmr.fetch_k}) must be at least top_k ({retrieval.top_k})",
                     "MMR picks top_k results out of fetch_k candidates")
        ]
    return []


def load_app_config(path: str | Path, extra_checks: ExtraChecks | None = None) -> LoadedConfig:
    """Read, interpolate and validate an app config; raises ConfigError with every problem.

    ``extra_checks`` validates what this package cannot see (component settings) and its
    issues are reported together with the rest.
    """
    file = str(path)
    raw, smap = read_yaml(Path(path), file)
    base_dir = Path(path).resolve().parent
    interpolator = Interpolator()
    data = interpolator.resolve(raw)
    issues = [issue_at(smap, file, loc, msg, hint) for loc, msg, hint in interpolator.problems]
    app = None
    try:
        app = AppConfig.model_validate(data)
    except ValidationError as exc:
        issues += issues_from_validation(exc, smap, file, (), AppConfig)
    issues += _source_issues(data, smap, file, base_dir)
    if app is not None:
        issues += _retrieval_issues(app, smap, file)
    if extra_checks is not None:
        issues += extra_checks(data, smap, file, base_dir)
    if issues or app is None:
        raise ConfigError(sorted(issues, key=lambda i: (i.line, i.col, i.path)))
    return LoadedConfig(app, data, smap, file, base_dir)
