"""Find the files of a source (include/exclude globs) and the loader for each file."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from llmops import registry
from llmops.protocols import Loader


def _char_class(pattern: str, i: int) -> tuple[str, int] | None:
    """The regex for a ``[...]`` class starting at ``i`` and the index after it, if closed."""
    end = pattern.find("]", i + 2 + (pattern[i + 1 : i + 2] == "!"))
    if end < 0:
        return None
    body = re.sub(r"([\\\[\]^])", r"\\\1", pattern[i + 1 : end])
    return ("[^/" + body[1:] + "]" if body[0] == "!" else "[" + body + "]"), end + 1


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Regex for a glob on posix relative paths: ``**`` spans folders (zero or more), ``*`` and
    ``?`` stay inside one name, ``[...]`` is a character class."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            token, i = "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            token, i = ".*", i + 2
        elif pattern[i] in "*?":
            token, i = ("[^/]*" if pattern[i] == "*" else "[^/]"), i + 1
        elif pattern[i] == "[" and (found := _char_class(pattern, i)):
            token, i = found
        else:
            token, i = re.escape(pattern[i]), i + 1
        out.append(token)
    return re.compile("".join(out))


def glob_match(relative: str, pattern: str) -> bool:
    """True if the whole posix ``relative`` path matches the glob ``pattern``."""
    return _glob_regex(pattern.strip("/")).fullmatch(relative) is not None


def _excluded(relative: str, patterns: Sequence[str]) -> bool:
    """An exclude matches the path, the path's tail (``*.tmp``) or one of its folders."""
    path = PurePosixPath(relative)
    folders = [p.as_posix() for p in path.parents if p.as_posix() != "."]
    return any(
        glob_match(relative, p) or path.match(p) or any(glob_match(f, p) for f in folders)
        for p in patterns
        if p.strip("/")
    )


def _walk(root: Path) -> list[str]:
    """Relative posix paths of the files under ``root``, hidden files and folders skipped."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(folder).relative_to(root)
        found += [(base / f).as_posix() for f in files if not f.startswith(".")]
    return found


def discover(root: Path, include: Sequence[str], exclude: Sequence[str]) -> list[Path]:
    """Files under ``root`` matching an include and no exclude glob (relative to ``root``),
    hidden ones skipped, sorted by relative path. A file given as ``root`` is returned as is."""
    if root.is_file():
        return [root]
    chosen = {
        relative
        for relative in _walk(root)
        if any(glob_match(relative, p) for p in include) and not _excluded(relative, exclude)
    }
    return [root / relative for relative in sorted(chosen) if (root / relative).is_file()]


def default_loaders() -> dict[str, Loader]:
    """Extension → loader with default settings, for every registered loader."""
    loaders: dict[str, Loader] = {}
    for name in registry.names("loader"):
        entry = registry.get("loader", name)
        loader = entry.factory(entry.config())
        for extension in loader.extensions:
            loaders.setdefault(extension.lower(), loader)
    return loaders


def loader_for(path: Path, loaders: Mapping[str, Loader]) -> Loader | None:
    """The loader for ``path``'s (lower-cased) suffix, if any."""
    return loaders.get(path.suffix.lower())
