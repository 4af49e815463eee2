"""What a deployment needs to know about an app: its names and port, how its state is kept,
and its config file as the container reads it (paths moved to where the image and the data
volume put them). The file stays as written otherwise: ``${VAR}`` references are resolved by
the container from its environment, so no secret value is ever copied into a rendered file."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmops.config import load_app_config, read_yaml, resolve_path
from llmops.config.schema import AppConfig

APP_DIR = "/app"  # the image's working directory: the project (configs, prompts, datasets)
CONFIG_FILE = f"{APP_DIR}/app.yaml"
DATA_DIR = "/var/lib/llmops"  # the data volume
SECRET_ENV = "LLMOPS_KEY_SECRET"
METRICS_KEY = "LLMOPS_METRICS_KEY"  # an admin-scoped API key Prometheus scrapes /metrics with
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAGAS_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class DeployedApp:
    """One app as deployed: the validated config and the file the container reads."""

    app: AppConfig
    raw: dict[str, Any]  # the container's config file, as data
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The app's name as a DNS-1123 label (Kubernetes objects, compose services)."""
        return self.app.name.lower().replace("_", "-")

    @property
    def port(self) -> int:
        return self.app.server.port

    @property
    def chroma_server(self) -> tuple[str, int] | None:
        """(host, port) of the Chroma server the store uses; None: embedded on disk."""
        settings = self.app.store.settings()
        if self.app.store.type != "chroma" or not settings.get("host"):
            return None
        return str(settings["host"]), int(settings.get("port", 8000))

    @property
    def uses_redis(self) -> bool:
        experiment = self.app.experiment
        return bool((experiment and experiment.redis_url) or self.app.server.auth.redis_url)

    @property
    def insecure(self) -> bool:
        """The app turns API keys off: `llmops up` needs --insecure on 0.0.0.0."""
        return self.app.server.auth.enabled is False

    @property
    def env_names(self) -> list[str]:
        """The environment variables the config refers to (``${NAME}``)."""
        return sorted(set(_ENV_REF.findall(yaml.safe_dump(self.raw))))

    def config_yaml(self) -> str:
        return yaml.safe_dump(self.raw, sort_keys=False, allow_unicode=True)

    def with_raw(self, change: Callable[[dict[str, Any]], None]) -> DeployedApp:
        """A copy whose container config ``change`` edited in place."""
        raw = copy.deepcopy(self.raw)
        change(raw)
        return DeployedApp(self.app, raw, list(self.notes))


def load(path: Path, root: Path) -> DeployedApp:
    """The app at ``path`` (validated as ``llmops validate`` does), its relative paths rewritten
    for a container whose ``/app`` holds the project folder ``root``."""
    loaded = load_app_config(path)
    raw, _ = read_yaml(path)  # the guarded reader: size, depth and alias limits
    notes: list[str] = []
    move = _mover(loaded.base_dir, root.resolve(), notes)
    for source in raw.get("sources") or []:
        if isinstance(source, dict):
            source["path"] = move(source.get("path"))
    if raw.get("prompts_dir") is not None:
        raw["prompts_dir"] = move(raw["prompts_dir"])
    raw["data_dir"] = DATA_DIR
    return DeployedApp(loaded.app, raw, notes)


def _mover(base: Path, root: Path, notes: list[str]) -> Callable[[Any], Any]:
    """A path of the config as the container sees it: inside the project, the same path under
    /app (where the image copies the project); outside it, kept, with a note."""

    def move(value: Any) -> Any:
        if not isinstance(value, str) or "${" in value:
            return value
        resolved = resolve_path(base, value)
        if resolved == root or root in resolved.parents:
            return os.path.relpath(resolved, root)
        notes.append(f"{value} is outside {root}: mount it at {resolved} in the container")
        return str(resolved)

    return move
