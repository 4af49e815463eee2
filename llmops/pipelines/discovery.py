"""Find the files of every source, hash them and pick their loader."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmops.errors import IngestError
from llmops.protocols import Loader
from llmops.rag.loaders.directory import discover, loader_for

SourceSpec = tuple[Path, list[str], list[str], Mapping[str, Loader], float]
"""(root, include globs, exclude globs, loader by extension, max_file_mb) of one source."""


@dataclass(frozen=True)
class SourceFile:
    """A file to index. ``key`` is its stable name in records and chunk metadata."""

    key: str
    path: Path
    loader: Loader | None
    content_hash: str
    source: int
    """Which of the config's ``sources`` it belongs to (an engine's worker picks its loader)."""


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_key(root: Path, path: Path) -> str:
    """``<folder name>/<path inside it>``, or the file name for a single-file source."""
    if root.is_file():
        return root.name
    return f"{root.name}/{path.relative_to(root).as_posix()}"


@dataclass(frozen=True)
class Discovery:
    """The files of every source, and the paths refused (key → reason): links out of a
    source folder, files over the source's size limit."""

    files: list[SourceFile]
    refused: dict[str, str]


def discover_files(sources: Sequence[SourceSpec]) -> Discovery:
    """Every file of every source, in a stable order; two files with one key is an error."""
    found: dict[str, SourceFile] = {}
    refused: dict[str, str] = {}
    for index, (root, include, exclude, loaders, max_file_mb) in enumerate(sources):
        if not root.exists():
            raise IngestError(f"source path does not exist: {root}")
        listing = discover(root, include, exclude, max_file_mb)
        refused |= {source_key(root, root / path): why for path, why in listing.refused.items()}
        for path in listing.files:
            key = source_key(root, path)
            if key in found and found[key].path != path:
                raise IngestError(
                    f"two sources produce the same document key '{key}': {found[key].path} and "
                    f"{path}; rename one of the source folders"
                )
            loader = loader_for(path, loaders)
            found[key] = SourceFile(key, path, loader, file_hash(path), index)
    return Discovery(list(found.values()), refused)
