"""``${NAME}`` / ``${NAME:-default}`` / ``{env: NAME}`` from the environment, and secrets.

Keys that hold secrets must take their value from the environment; a literal is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from llmops.config.yaml_source import Loc

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_KEY = re.compile(r"^(.*_)?(api_key|token|password|secret)$", re.I)
MASK = "***"


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.match(key))


class Interpolator:
    """Resolves environment references; collects (loc, message, hint) problems."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.problems: list[tuple[Loc, str, str]] = []

    def resolve(self, value: Any, loc: Loc = ()) -> Any:
        if isinstance(value, dict):
            if set(value) == {"env"} and isinstance(value["env"], str):
                return self._lookup(value["env"], None, loc)
            return {k: self._entry(k, v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, (*loc, i)) for i, v in enumerate(value)]
        if isinstance(value, str):
            return _VAR.sub(lambda m: self._replace(m, loc), value)
        return value

    def _entry(self, key: Any, value: Any, loc: Loc) -> Any:
        if is_secret_key(key) and isinstance(value, str) and value and not _VAR.search(value):
            self.problems.append(
                (
                    loc,
                    f"literal secret in config for '{key}'",
                    f"use ${{{str(key).upper()}}} and set it in the environment",
                )
            )
        return self.resolve(value, loc)

    def _replace(self, match: re.Match[str], loc: Loc) -> str:
        if match.group(0) == "$${":
            return "${"
        return self._lookup(match.group(1), match.group(2), loc)

    def _lookup(self, name: str, default: str | None, loc: Loc) -> str:
        if name in self.environ:
            return self.environ[name]
        if default is not None:
            return default
        self.problems.append(
            (
                loc,
                f"environment variable {name} is not set",
                f"export {name}=... or write ${{{name}:-default}}",
            )
        )
        return ""


def mask_secrets(data: Any) -> Any:
    """A copy of ``data`` with every secret-keyed value replaced by ``***``."""
    if isinstance(data, dict):
        return {
            k: MASK if is_secret_key(k) and v not in (None, "") else mask_secrets(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [mask_secrets(v) for v in data]
    return data
