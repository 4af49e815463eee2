"""Find the files of a source (include/exclude globs) and the loader for each file."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path

from llmops import registry
from llmops.protocols import Loader


def _matches(relative: str, pattern: str) -> bool:
    """Glob match on a posix relative path; ``**/`` also matches zero folders."""
    if fnmatch.fnmatchcase(relative, pattern):
        return True
    return pattern.startswith("**/") and _matches(relative, pattern[3:])


def discover(root: Path, include: Sequence[str], exclude: Sequence[str]) -> list[Path]:
    """Files under ``root`` matching an include and no exclude pattern, hidden ones skipped,
    sorted by relative path. A file given as ``root`` is returned as is."""
    if root.is_file():
        return [root]
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if not path.is_file():
            continue
        if any(_matches(relative, p) for p in include) and not any(
            _matches(relative, p) for p in exclude
        ):
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def default_loaders() -> dict[str, Loader]:
    """Extension → loader with default settings, for every registered loader."""
    loaders: dict[str, Loader] = {}
    for name in registry.names("loader"):
        entry = registry.get("loader", name)
        loader = entry.factory(entry.config())
        for extension in loader.extensions:
            loaders.setdefault(extension, loader)
    return loaders


def loader_for(path: Path, loaders: Mapping[str, Loader]) -> Loader | None:
    return loaders.get(path.suffix.lower())
