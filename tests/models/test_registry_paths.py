"""Registry paths stay confined, on a real MLflow registry (SQLite + local artifacts): a
folder linking out of itself is not registered, and a version whose source names a local
path outside its run's artifacts (MLflow's CVE-2023-6977 / CVE-2024-1483 kind), reaches out
with '..', or holds a link out of the store, is not downloaded; nothing lands outside the
destination folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from llmops.errors import BackendError, RegistryError
from llmops.generation.hf_adapters import AdapterFollower
from llmops.models import ModelRegistry, ModelVersion
from llmops.models.adapters import AdapterManifest, register_adapter

SECRET = "root:the secret password is hunter2"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "passwd").write_text(SECRET)
    return folder


def _folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\x00" * 8)
    return folder


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _crafted(registry: ModelRegistry, name: str, source: str, run_id: str) -> ModelVersion:
    """A version registered straight through MLflow with a ``source`` of the caller's choice,
    as anyone with write access to the registry could."""
    created = registry._client().create_model_version(name, source, run_id=run_id)
    return registry.get(name, str(created.version))


def test_a_folder_linking_out_of_itself_is_not_registered(
    registry: ModelRegistry, tmp_path: Path, secret: Path
) -> None:
    folder = _folder(tmp_path, "model")
    (folder / "config.json").symlink_to(secret / "passwd")
    with pytest.raises(RegistryError, match=r"symbolic links lead out of the folder: config\.json"):
        registry.register_folder("paths-linked", folder, metrics={}, params={}, tags={})
    assert "paths-linked" not in registry.names()


def test_an_adapter_linking_out_of_its_folder_is_not_registered(
    registry: ModelRegistry, tmp_path: Path, secret: Path
) -> None:
    adapter = _folder(tmp_path, "adapter")
    (adapter / "adapter_config.json").write_text('{"r": 4, "target_modules": ["q_proj"]}')
    (adapter / "tokenizer.json").symlink_to(secret / "passwd")  # copying would follow it
    manifest = AdapterManifest("base", "0" * 64, rank=4, alpha=8.0, target_modules=("q_proj",))
    with pytest.raises(RegistryError, match=r"lead out of the folder: tokenizer\.json"):
        register_adapter(
            registry, "paths-adapter", adapter, manifest, metrics={}, params={}, tags={}
        )
    assert "paths-adapter" not in registry.names()


@pytest.mark.parametrize("form", ["path", "file-uri", "dot-dot", "runs-dot-dot"])
def test_a_version_sourced_outside_its_run_is_not_downloaded(
    registry: ModelRegistry, tmp_path: Path, secret: Path, form: str
) -> None:
    name = f"paths-{form}"
    honest = registry.register_folder(
        name, _folder(tmp_path, "model"), metrics={}, params={}, tags={}
    )
    climb = "/".join([".."] * 8) + str(secret)
    source = {
        "path": str(secret),
        "file-uri": secret.as_uri(),
        "dot-dot": f"{honest.source}/{climb}",
        "runs-dot-dot": f"runs:/{honest.run_id}/../../../../{secret.name}",
    }[form]
    crafted = _crafted(registry, name, source, honest.run_id)
    dst = tmp_path / "download"
    reason = "lies outside its run's artifacts" if form in ("path", "file-uri") else "'..' step"
    with pytest.raises(RegistryError, match=reason):
        registry.download(crafted, dst)
    assert _files(dst) == []
    assert _files(registry.download(honest, tmp_path / "ok")) == ["weights.bin"]


def test_a_link_planted_in_the_artifact_store_is_not_followed(
    registry: ModelRegistry, tmp_path: Path, secret: Path
) -> None:
    version = registry.register_folder(
        "paths-planted", _folder(tmp_path, "model"), metrics={}, params={}, tags={}
    )
    stored = Path(urlparse(version.source).path)
    (stored / "leak.txt").symlink_to(secret / "passwd")
    dst = tmp_path / "download"
    with pytest.raises(RegistryError, match=r"symbolic links lead out of the folder: leak\.txt"):
        registry.download(version, dst)
    assert SECRET not in {p.read_text() for p in dst.rglob("*") if p.is_file()}


def test_run_files_are_read_by_relative_paths_only(registry: ModelRegistry, tmp_path: Path) -> None:
    version = registry.register_folder(
        "paths-run-file", _folder(tmp_path, "model"), metrics={}, params={}, tags={}
    )
    assert registry.run_file(version, "model/weights.bin") == b"\x00" * 8
    for path in ("../../secret/passwd", "/etc/passwd"):
        with pytest.raises(RegistryError, match="artifact path"):
            registry.run_file(version, path)


class _Source:
    """An adapter source that hands back a folder it did not download into ``dst``."""

    def __init__(self, elsewhere: Path) -> None:
        self.elsewhere = elsewhere

    def version_of(self, name: str, ref: str) -> int:
        return 1

    def download(self, name: str, version: int, dst: Path) -> tuple[Path, dict[str, Any]]:
        return self.elsewhere, {}

    def fingerprint(self, model_dir: Path) -> str:
        return ""


def test_hf_local_serves_adapters_only_from_its_download_folder(
    tmp_path: Path, secret: Path
) -> None:
    follower = AdapterFollower("hf", _Source(secret), {"a": ("a", "production")}, lambda m: None)
    try:
        with pytest.raises(BackendError, match="lies outside the download folder"):
            follower.initial()
    finally:
        follower.close()
