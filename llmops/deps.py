"""Lazy imports of optional heavy libraries, with an error that names the pip extra."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from llmops.errors import MissingDependency

PROMETHEUS_ENV = (
    "PROMETHEUS_MULTIPROC_DIR",
    "PROMETHEUS_MULTIPROCESS_DIR",
    "prometheus_multiproc_dir",
)
"""``import feast`` sets the first two to a temp folder of its own. Left set, they would put every
process this one starts into Prometheus multiprocess mode, writing to feast's folder. feast
is imported by its own users and by MLflow, which loads feast's MLflow plugin (a request
header provider) the first time it talks to a tracking server."""
LAZY_PLUGINS = {"mlflow": "mlflow.tracking.request_header.registry"}
"""Modules that a package imports later by itself and that load third-party plugins: imported
with the package, under the same guard."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise MissingDependency telling which extra installs it. No
    import changes the process's Prometheus setup (see ``PROMETHEUS_ENV``)."""
    try:
        with _prometheus_env_kept():
            imported = importlib.import_module(module)
            plugins = LAZY_PLUGINS.get(module.split(".")[0])
            if plugins is not None:
                importlib.import_module(plugins)
            return imported
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name and exc.name.split(".")[0] != top:
            raise
        raise MissingDependency(module, extra) from exc


@contextmanager
def _prometheus_env_kept() -> Iterator[None]:
    """prometheus_client imported first (it picks its value storage once, at import, from
    this environment), and the environment put back as it was after the block."""
    if "prometheus_client" not in sys.modules and available("prometheus_client"):
        importlib.import_module("prometheus_client")
    before = {name: os.environ.get(name) for name in PROMETHEUS_ENV}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def available(module: str) -> bool:
    """True if ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAGAS_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    # a served model is loaded from the registry: no progress bar in the server's log
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def offline_environment() -> None:
    """Never reach for a model hub or send telemetry unless the user set these themselves."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
