"""Find the files of a source (include/exclude globs) and the loader for each file."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from llmops import registry
from llmops.confine import OUTSIDE, inside, real
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


def _folder_excluded(relative: str, patterns: Sequence[str]) -> bool:
    """An exclude matches the folder or everything in it (``drafts/**``)."""
    return _excluded(relative, patterns) or _excluded(f"{relative}/", patterns)


__all__ = ["OUTSIDE", "Listing", "default_loaders", "discover", "glob_match", "loader_for"]


def too_large(size: int, limit_mb: float) -> str:
    """The reason a file of ``size`` bytes is skipped."""
    return (
        f"file is {size / 1e6:,.1f} MB, over the limit of {limit_mb:g} MB: skipped "
        "(raise sources[].max_file_mb to read it)"
    )


@dataclass(frozen=True)
class Listing:
    """The files of a source, and the paths refused (relative posix path → reason): links that
    lead out of it, files over the size limit."""

    files: list[Path]
    refused: dict[str, str]


@dataclass
class _Walk:
    """What a walk found: (relative posix path, real path) of each file, the relative paths of
    links out of the root (True for a folder), and the real folders already walked."""

    top: Path
    files: list[tuple[str, Path]] = field(default_factory=list)
    refused: list[tuple[str, bool]] = field(default_factory=list)
    walked: set[Path] = field(default_factory=set)


def _entries(root: Path, start: str, walked: set[Path]) -> Iterator[tuple[str, Path, bool]]:
    """(relative posix path, path, is a folder link) of the files and folder links under
    ``root / start``, links not followed, hidden names skipped; a real folder already in
    ``walked`` is skipped, and each folder listed is added to it."""
    for folder, dirs, names in os.walk(root / start):
        here, actual = Path(folder), real(folder)
        if actual in walked:  # reached again through a link
            dirs[:] = []
            continue
        walked.add(actual)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = here.relative_to(root)
        for name in dirs:
            if (here / name).is_symlink():  # os.walk does not go in: see _walk
                yield (base / name).as_posix(), here / name, True
        for name in names:
            if not name.startswith("."):
                yield (base / name).as_posix(), here / name, False


def _walk(root: Path) -> _Walk:
    """Every file under ``root``. Links (to files and folders alike) are followed while their
    target stays inside the root and refused otherwise. Each real folder is walked once, so a
    cycle ends, and the real tree comes first, so a file keeps its own path when it has one."""
    walk = _Walk(real(root))
    pending = ["."]
    while pending:
        for relative, path, folder_link in _entries(root, pending.pop(0), walk.walked):
            if not inside(walk.top, path):
                walk.refused.append((relative, folder_link))
            elif folder_link:
                pending.append(relative)
            elif (target := real(path)).is_file():  # realpath: a link loop does not raise
                walk.files.append((relative, target))
    return walk


def _sized(listing: Listing, root: Path, max_file_mb: float | None) -> Listing:
    """``listing`` with the files over ``max_file_mb`` moved to the refused ones."""
    if max_file_mb is None:
        return listing
    files, refused = [], dict(listing.refused)
    for path in listing.files:
        size = path.stat().st_size
        if size > max_file_mb * 1e6:
            refused[path.name if path == root else path.relative_to(root).as_posix()] = too_large(
                size, max_file_mb
            )
        else:
            files.append(path)
    return Listing(files, refused)


def discover(
    root: Path, include: Sequence[str], exclude: Sequence[str], max_file_mb: float | None = None
) -> Listing:
    """Files under ``root`` matching an include and no exclude glob (relative to ``root``),
    hidden ones skipped, each real file once, sorted by relative path; links out of ``root``
    and files over ``max_file_mb`` (when given) are refused. A file given as ``root`` is
    returned as is (or refused for its size)."""
    if root.is_file():
        return _sized(Listing([root], {}), root, max_file_mb)
    return _sized(_listing(root, include, exclude), root, max_file_mb)


def _listing(root: Path, include: Sequence[str], exclude: Sequence[str]) -> Listing:
    walk = _walk(root)

    def wanted(relative: str) -> bool:
        return any(glob_match(relative, p) for p in include) and not _excluded(relative, exclude)

    chosen: dict[Path, str] = {}
    for relative, target in sorted(walk.files, key=lambda f: (walk.top / f[0] != f[1], f[0])):
        if wanted(relative):
            chosen.setdefault(target, relative)
    refused = {
        relative: OUTSIDE
        for relative, folder in walk.refused
        if (not _folder_excluded(relative, exclude) if folder else wanted(relative))
    }
    return Listing([root / relative for relative in sorted(chosen.values())], refused)


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
