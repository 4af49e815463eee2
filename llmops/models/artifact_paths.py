"""Where a registered version's files may come from and go to. A version's source is data in
the registry, written by whoever can register: a source that names a local folder outside its
run's artifacts (``/home/me/.ssh``), or reaches out of them with ``..`` (``runs:/ID/../..``),
would copy those files into an adapter folder that is then served or published; MLflow's own
CVE-2023-6977 and CVE-2024-1483 were such bypasses. Both are refused before downloading, and
what was downloaded is checked to stay inside its destination folder."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from llmops.confine import Escape, check_tree, inside, relative_part
from llmops.errors import RegistryError


def _local_path(uri: str) -> Path | None:
    """The local path of a ``file:`` URI or a plain path; None for other schemes."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(uri)
    return None


def _no_dot_dot(uri: str, path: str, what: str) -> None:
    if ".." in Path(unquote(path)).parts:
        raise RegistryError(f"{what}: its source '{uri}' has a '..' step: refused")


def check_source(uri: str, run_artifacts: str | None, what: str) -> None:
    """RegistryError unless ``uri`` (a version's download URI) stays inside the artifacts of
    the run that logged it (``run_artifacts``, the run's artifact URI): no ``..`` step in any
    URI, and a local source must lie (links followed) under a local run artifact folder."""
    parsed = urlparse(uri)
    _no_dot_dot(uri, parsed.path, what)
    if parsed.scheme == "runs":  # runs:/RUN_ID/relative/path
        return
    local = _local_path(uri)
    if local is None:
        return  # a remote store (s3:, mlflow-artifacts:, ...) resolves its own paths
    root = _local_path(run_artifacts) if run_artifacts else None
    if root is None:
        raise RegistryError(
            f"{what}: its source is the local path {local}, but it has no run with local "
            "artifacts to hold it: refused (register versions from a run's artifacts)"
        )
    if not inside(root, local):
        raise RegistryError(
            f"{what}: its source {local} lies outside its run's artifacts ({root}): refused"
        )
    try:
        check_tree(local)
    except Escape as exc:
        raise RegistryError(f"{what}: {exc}: refused") from None


def check_download(local: Path, dst: Path, what: str) -> Path:
    """``local`` (what a download returned) when it lies inside ``dst`` and no link under it
    leads out of ``dst``; else RegistryError."""
    if not inside(dst, local):
        raise RegistryError(f"{what}: the download landed at {local}, outside {dst}: refused")
    try:
        check_tree(local)
    except Escape as exc:
        raise RegistryError(f"{what}: {exc}: refused") from None
    return local


def check_upload(folder: Path, what: str) -> None:
    """RegistryError when a link under ``folder`` leads out of it: uploading follows links, so
    it would register files from elsewhere (a key, a password file) with the version."""
    try:
        check_tree(folder)
    except Escape as exc:
        raise RegistryError(f"{what}: {exc}: refused (copy the files in instead)") from None


def run_path(path: str, what: str) -> str:
    """``path`` (an artifact path inside a run) as a safe relative posix path."""
    try:
        return relative_part(path).as_posix()
    except Escape as exc:
        raise RegistryError(f"{what}: artifact path {exc}: refused") from None
