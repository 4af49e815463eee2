"""What a deployment needs to know about an app (a RAG app, or a model app: ``kind: model``):
its names and port, how its state is kept, and its config file as the container reads it
(paths moved to where the image and the data volume put them). The file stays as written
otherwise: ``${VAR}`` references are resolved by the container from its environment, so no
secret value is ever copied into a rendered file. The image's ``llmops up /app/app.yaml``
serves either kind."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmops.config import (
    config_kind,
    load_app_config,
    load_model_app_config,
    read_yaml,
    resolve_path,
)
from llmops.config.model_app import ModelAppConfig, ServingConfig
from llmops.config.schema import AppConfig, ServerConfig

APP_DIR = "/app"  # the image's working directory: the project (configs, prompts, datasets)
CONFIG_FILE = f"{APP_DIR}/app.yaml"
DATA_DIR = "/var/lib/llmops"  # the data volume
SECRET_ENV = "LLMOPS_KEY_SECRET"
METRICS_KEY = "LLMOPS_METRICS_KEY"  # an admin-scoped API key Prometheus scrapes /metrics with
TRACKING_ENV = "MLFLOW_TRACKING_URI"  # a model app's registry, when its config names none
REQUEST_LOG_ENV = "REQUEST_LOG_URL"  # the request log's PostgreSQL URL (it holds a password)
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

    app: AppConfig | ModelAppConfig
    raw: dict[str, Any]  # the container's config file, as data
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The app's name as a DNS-1123 label (Kubernetes objects, compose services)."""
        return self.app.name.lower().replace("_", "-")

    @property
    def rag(self) -> AppConfig | None:
        """The RAG app's config; None for a model app."""
        return self.app if isinstance(self.app, AppConfig) else None

    @property
    def ingests(self) -> bool:
        """A RAG app indexes its sources (a model app serves registered versions)."""
        return self.rag is not None

    @property
    def http(self) -> ServerConfig | ServingConfig:
        """The HTTP server's settings: ``server:`` (RAG app) or ``serving:`` (model app)."""
        return self.app.server if isinstance(self.app, AppConfig) else self.app.serving

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def chroma_server(self) -> tuple[str, int] | None:
        """(host, port) of the Chroma server the store uses; None: embedded on disk or none."""
        if self.rag is None:
            return None
        settings = self.rag.store.settings()
        if self.rag.store.type != "chroma" or not settings.get("host"):
            return None
        return str(settings["host"]), int(settings.get("port", 8000))

    @property
    def uses_redis(self) -> bool:
        app = self.app
        policy = app.experiment if isinstance(app, AppConfig) else app.routing
        return bool((policy and policy.redis_url) or self.http.auth.redis_url)

    @property
    def request_log_in_postgres(self) -> bool:
        """A RAG app keeping its request log in PostgreSQL (``monitoring.request_log.url``)."""
        log = self.rag.monitoring.request_log if self.rag else None
        return bool(log and log.enabled and log.url)

    @property
    def insecure(self) -> bool:
        """The app turns API keys off: `llmops up` needs --insecure on 0.0.0.0."""
        return self.http.auth.enabled is False

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
    model = config_kind(path) == "model"
    loaded = load_model_app_config(path) if model else load_app_config(path)
    raw, _ = read_yaml(path)  # the guarded reader: size, depth and alias limits
    notes: list[str] = []
    move = _mover(loaded.base_dir, root.resolve(), notes)
    if model:
        _move_model_paths(raw, move, notes)
    deployed = DeployedApp(loaded.app, raw, notes)
    if deployed.request_log_in_postgres:  # the URL, password and all, comes from a secret
        raw["monitoring"]["request_log"]["url"] = f"${{{REQUEST_LOG_ENV}}}"
    for source in raw.get("sources") or []:
        if isinstance(source, dict):
            source["path"] = move(source.get("path"))
    if raw.get("prompts_dir") is not None:
        raw["prompts_dir"] = move(raw["prompts_dir"])
    raw["data_dir"] = DATA_DIR
    return deployed


def _move_model_paths(raw: dict[str, Any], move: Callable[[Any], Any], notes: list[str]) -> None:
    """A model app's data files (the config is checked against them when it loads, also to
    serve), and its registry: a SQLite file in each container's data dir would hold no
    version, so an unnamed one becomes ``${MLFLOW_TRACKING_URI}`` (a shared MLflow)."""
    retrain = (raw.get("monitoring") or {}).get("retrain") or {}
    for data in (raw.get("data"), retrain.get("data")):
        for part in ("train", "test"):
            source = data.get(part) if isinstance(data, dict) else None
            if isinstance(source, dict):
                source["path"] = move(source.get("path"))
        feast = data.get("feast") if isinstance(data, dict) else None
        if isinstance(feast, dict):
            feast.update(repo=move(feast.get("repo")), entities=move(feast.get("entities")))
    registry = raw.setdefault("registry", {})
    if not registry.get("tracking_uri"):
        registry["tracking_uri"] = f"${{{TRACKING_ENV}}}"
        notes.append(
            f"registry.tracking_uri is unset (MLflow on SQLite in the data dir): the container "
            f"reads the registry at ${TRACKING_ENV} (compose: the mlflow service)"
        )


def _mover(base: Path, root: Path, notes: list[str]) -> Callable[[Any], Any]:
    """A path of the config as the container sees it: inside the project, the same path under
    /app (where the image copies the project); outside it, kept, with a note."""

    def move(value: Any) -> Any:
        if isinstance(value, str) and "${" in value:
            notes.append(f"{value} is resolved from the container's environment: make it name "
                         "a path in the container (mount the files there)")  # fmt: skip
        if not isinstance(value, str) or "${" in value:
            return value
        resolved = resolve_path(base, value)
        if resolved == root or root in resolved.parents:
            return os.path.relpath(resolved, root)
        notes.append(f"{value} is outside {root}: mount it at {resolved} in the container")
        return str(resolved)

    return move
