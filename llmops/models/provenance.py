"""Where a registered version came from, as version tags: the git commit of the checkout that
holds the app's config, and, for data files tracked by DVC, the md5 their ``.dvc`` file
records (so ``dvc checkout`` at that commit gives back exactly the rows it was trained on).

A DVC-tracked file has a ``<file>.dvc`` YAML beside it (``dvc add data/adult.data``), or a
folder above it is tracked as a whole (``dvc add data`` writes ``data.dvc``)::

    outs:
    - md5: 22a1a2931c8370d3aeedd7183606fd7f
      size: 3974305
      path: adult.data

The file is read as plain YAML: no dvc dependency.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmops.config import LoadedModelApp, read_yaml, resolve_path
from llmops.config.model_app import DataConfig
from llmops.errors import ConfigError
from llmops.models._mlflow import git_tags

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DvcRecord:
    """What a ``.dvc`` file says of one tracked file or folder."""

    file: Path  # the .dvc file
    md5: str  # a folder's ends in ".dir"


def model_app_provenance(loaded: LoadedModelApp) -> dict[str, str]:
    """The provenance tags of a model app's version: its config's checkout, its data files."""
    return provenance_tags(loaded.base_dir, data_files(loaded.app.data, loaded.base_dir))


def provenance_tags(folder: Path, data_files: Mapping[str, Path]) -> dict[str, str]:
    """``git.commit`` of the checkout holding ``folder`` (the config's folder), and
    ``dvc.md5`` / ``dvc.file`` of the first DVC-tracked data file; another file tracked by a
    different ``.dvc`` file gets ``dvc.<role>.md5`` / ``dvc.<role>.file`` (role: the key
    in ``data_files``, e.g. ``test``). ``dvc.file`` is relative to ``folder``."""
    tags = git_tags(folder)
    seen: list[Path] = []
    for role, path in data_files.items():
        record = dvc_record(path)
        if record is None or record.file in seen:
            continue
        prefix = "dvc." if not seen else f"dvc.{role}."
        seen.append(record.file)
        tags[f"{prefix}md5"] = record.md5
        tags[f"{prefix}file"] = os.path.relpath(record.file, folder.resolve())
    return tags


def data_files(data: DataConfig, base_dir: Path) -> dict[str, Path]:
    """A model app's data files by role (train, test; with Feast, the entity table)."""
    named = {"train": data.train, "test": data.test}
    files = {role: source.path for role, source in named.items() if source is not None}
    if data.feast is not None:
        files["entities"] = data.feast.entities
    return {role: resolve_path(base_dir, path) for role, path in files.items()}


def dvc_record(path: Path) -> DvcRecord | None:
    """The md5 recorded for ``path`` by its ``.dvc`` file, or by one of a folder above it
    (up to the DVC or git repository's root); None when it is not tracked."""
    path = path.resolve()
    for tracked in (path, *path.parents):
        if not tracked.name:  # the filesystem root
            return None
        candidate = tracked.parent / f"{tracked.name}.dvc"
        if candidate.is_file():
            return _read(candidate, tracked.name)
        if (tracked.parent / ".dvc").is_dir() or (tracked.parent / ".git").exists():
            return None  # the repository's root: nothing above it tracks this file
    return None


def _read(dvc_file: Path, name: str) -> DvcRecord | None:
    """The md5 of the output ``name`` (else the first output) in ``dvc_file``."""
    try:
        data, _ = read_yaml(dvc_file)  # the guarded reader: size, depth and alias limits
    except ConfigError as exc:
        log.warning("cannot read the DVC file %s (%s); the version gets no dvc tags", dvc_file, exc)
        return None
    outs = data.get("outs") if isinstance(data, dict) else None
    outs = [o for o in outs or [] if isinstance(o, dict) and o.get("md5")]
    if not outs:
        log.warning("the DVC file %s lists no output with an md5", dvc_file)
        return None
    named = [o for o in outs if Path(str(o.get("path", ""))).name == name]
    return DvcRecord(dvc_file, str((named or outs)[0]["md5"]))
