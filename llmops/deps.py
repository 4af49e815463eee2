"""Lazy imports of optional heavy libraries, with an error that names the pip extra."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from llmops.errors import MissingDependency


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise MissingDependency telling which extra installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name and exc.name.split(".")[0] != top:
            raise
        raise MissingDependency(module, extra) from exc


def available(module: str) -> bool:
    """True if ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
