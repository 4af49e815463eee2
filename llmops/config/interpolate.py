"""``${NAME}`` / ``${NAME:-default}`` / ``{env: NAME}`` from the environment, and secrets.

Keys that hold secrets must take their value from the environment; a literal is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from typing import Any

from llmops.config.yaml_source import Loc

# ``$${`` (an escaped ``${``), a valid reference, or anything else that starts with ``${``.
_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?")
_SECRET_KEY = re.compile(r"^(.*_)?(api_key|token|password|secret)$", re.I)
MASK = "***"


def is_secret_key(key: object) -> bool:
    """``api_key``, ``token``, ``password`` or ``secret``, alone or as a ``_`` suffix."""
    return isinstance(key, str) and bool(_SECRET_KEY.match(key))


def _is_literal(value: Any) -> bool:
    """A non-empty string written in the file rather than taken from the environment."""
    if not isinstance(value, str) or not value:
        return False
    return not any(match.group(1) for match in _REF.finditer(value))


class Interpolator:
    """Resolves environment references, collecting (loc, message, hint) problems.

    ``secret_paths`` collects the locations whose value is secret: a secret-named key, or a
    value read from a secret-named variable (``OPENAI_API_KEY``); ``mask_secrets`` hides them.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.problems: list[tuple[Loc, str, str]] = []
        self.secret_paths: set[Loc] = set()

    def resolve(self, value: Any, loc: Loc = ()) -> Any:
        if isinstance(value, dict):
            if set(value) == {"env"} and isinstance(value["env"], str):
                return self._lookup(value["env"], None, loc)
            return {k: self._entry(k, v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, (*loc, i)) for i, v in enumerate(value)]
        if isinstance(value, str):
            return _REF.sub(lambda match: self._replace(match, loc), value)
        return value

    def _entry(self, key: Any, value: Any, loc: Loc) -> Any:
        if is_secret_key(key):
            self.secret_paths.add(loc)
            if _is_literal(value):
                self.problems.append(
                    (
                        loc,
                        f"literal secret in config for '{key}'",
                        f"use ${{{str(key).upper()}}} and set it in the environment",
                    )
                )
        return self.resolve(value, loc)

    def _replace(self, match: re.Match[str], loc: Loc) -> str:
        text, name = match.group(0), match.group(1)
        if text == "$${":
            return "${"
        if name is None:
            self.problems.append(
                (
                    loc,
                    f"malformed environment reference '{text}'",
                    "write ${NAME} or ${NAME:-default}; write $${ for a literal ${",
                )
            )
            return text
        return self._lookup(name, match.group(2), loc)

    def _lookup(self, name: str, default: str | None, loc: Loc) -> str:
        if is_secret_key(name):
            self.secret_paths.add(loc)
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


def mask_secrets(data: Any, paths: Collection[Loc] = ()) -> Any:
    """A copy of ``data`` with secret values replaced by ``***``.

    Secret values sit under a secret-named key, or at one of ``paths`` (for example
    ``LoadedConfig.secret_paths``); empty values stay visible, so a missing secret shows.
    """
    return _mask(data, (), frozenset(paths))


def _mask(value: Any, loc: Loc, paths: frozenset[Loc]) -> Any:
    secret = loc in paths or (bool(loc) and is_secret_key(loc[-1]))
    if secret and value not in (None, ""):
        return MASK
    if isinstance(value, dict):
        return {k: _mask(v, (*loc, k), paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, (*loc, i), paths) for i, v in enumerate(value)]
    return value
