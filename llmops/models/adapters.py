"""LoRA adapters as registered model versions.

An adapter version is an MLflow run's ``adapter/`` artifact: the peft adapter folder (with the
tokenizer files when the trainer saved them there), its ``manifest.json`` (what base model it
was trained on, rank, alpha, target modules, dtype, objective) and, under ``job/``, extra files
such as the job YAML. The version is tagged ``llmops.kind=adapter`` plus ``adapter.<field>`` for
each manifest field, and gets the alias ``candidate`` like any other version.

``base_model_sha256`` is the base model's identity that the trainer records and servers check
before they load an adapter. ``RegistryAdapterSource`` is what ``hf_local`` uses to follow an
adapter alias (it meets the generator's ``AdapterSource`` protocol without importing it).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from llmops import model_files
from llmops.errors import RegistryError
from llmops.models.artifact_paths import check_upload
from llmops.models.registry import ModelRegistry, ModelVersion

MANIFEST_FILE = "manifest.json"
ADAPTER_ARTIFACT = "adapter"
JOB_FOLDER = "job"
KIND_TAG = "llmops.kind"
ADAPTER_KIND = "adapter"
ADAPTER_TAG = "adapter."


def base_model_sha256(model_dir: Path) -> str:
    """``llmops.model_files.base_model_sha256``, a missing config.json as a RegistryError."""
    try:
        return model_files.base_model_sha256(model_dir)
    except FileNotFoundError as exc:
        raise RegistryError(str(exc)) from None


@dataclass(frozen=True)
class AdapterManifest:
    """What an adapter was trained on and how; stored as ``manifest.json`` beside it."""

    base_model: str  # the base model's folder name or hub id
    base_model_sha256: str  # base_model_sha256() of that folder
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    dtype: str = "float32"
    objective: str = "sft"  # sft | distill
    extra: Mapping[str, Any] = field(default_factory=dict)  # anything else the trainer records

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "manifest") -> AdapterManifest:
        """A manifest from its JSON form; RegistryError naming ``where`` and the bad field."""
        known = {f.name for f in fields(cls)}
        missing = sorted({"base_model", "base_model_sha256", "rank", "alpha"} - set(data))
        if missing:
            raise RegistryError(f"{where}: missing {', '.join(missing)}")
        try:
            return cls(
                base_model=str(data["base_model"]),
                base_model_sha256=str(data["base_model_sha256"]),
                rank=int(data["rank"]),
                alpha=float(data["alpha"]),
                target_modules=_modules(data.get("target_modules")),
                dtype=str(data.get("dtype", "float32")),
                objective=str(data.get("objective", "sft")),
                extra={
                    **dict(data.get("extra") or {}),
                    **{k: v for k, v in data.items() if k not in known},
                },
            )
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"{where}: {exc}") from None

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, folder: Path) -> AdapterManifest:
        path = Path(folder) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise RegistryError(f"no adapter manifest at {path}") from None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{path}: expected a JSON object")
        return cls.from_dict(data, str(path))

    @classmethod
    def for_adapter(
        cls, adapter_dir: Path, base_model_dir: Path, *, dtype: str = "float32", **more: Any
    ) -> AdapterManifest:
        """A manifest from a saved peft adapter (rank, alpha, target modules from its
        ``adapter_config.json``) and the base model folder it was trained on."""
        config = _adapter_config(Path(adapter_dir))
        targets = config.get("target_modules") or ()
        return cls(
            base_model=Path(base_model_dir).name,
            base_model_sha256=base_model_sha256(Path(base_model_dir)),
            rank=int(config.get("r", 0)),
            alpha=float(config.get("lora_alpha", 0)),
            target_modules=tuple(sorted([targets] if isinstance(targets, str) else targets)),
            dtype=dtype,
            **more,
        )

    def tags(self) -> dict[str, str]:
        """The version tags that show this manifest in `llmops models show`."""
        shown = {k: v for k, v in self.to_dict().items() if k != "extra"}
        shown["target_modules"] = ",".join(self.target_modules)
        return {KIND_TAG: ADAPTER_KIND, **{f"{ADAPTER_TAG}{k}": str(v) for k, v in shown.items()}}


def register_adapter(
    registry: ModelRegistry,
    name: str,
    adapter_dir: Path,
    manifest: AdapterManifest,
    *,
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    run_id: str | None = None,
    extra_files: Iterable[Path] = (),
) -> ModelVersion:
    """Log ``adapter_dir`` (+ ``manifest.json``, + ``extra_files`` under ``job/``) as the run's
    ``adapter`` artifact and register it as a new version of ``name`` with the alias
    ``candidate``. Everything is checked before anything is logged: a bad folder or a missing
    extra file registers nothing."""
    adapter_dir = Path(adapter_dir)
    _adapter_config(adapter_dir)
    check_upload(adapter_dir, f"registering adapter '{name}' from {adapter_dir}")
    extras = [Path(p) for p in extra_files]
    for path in extras:
        if not path.is_file():
            raise RegistryError(f"adapter '{name}': extra file not found: {path}")
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / ADAPTER_ARTIFACT
        shutil.copytree(adapter_dir, staged, ignore=shutil.ignore_patterns(JOB_FOLDER))
        manifest.write(staged)
        if extras:
            (staged / JOB_FOLDER).mkdir()
            for path in extras:
                shutil.copy2(path, staged / JOB_FOLDER / path.name)
        return registry.register_folder(
            name,
            staged,
            artifact=ADAPTER_ARTIFACT,
            metrics=metrics,
            params=params,
            tags={**tags, **manifest.tags()},
            run_id=run_id,
        )


def download_adapter(
    registry: ModelRegistry, name: str, ref: str, dst: Path
) -> tuple[Path, AdapterManifest, ModelVersion]:
    """Version ``ref`` (number, alias, latest) of adapter ``name`` downloaded into ``dst``:
    the local adapter folder, its manifest and the version."""
    version = registry.get(name, ref)
    if version.tags.get(KIND_TAG) != ADAPTER_KIND:
        raise RegistryError(
            f"'{name}' version {version.version} is not an adapter (tag {KIND_TAG}="
            f"{version.tags.get(KIND_TAG, 'unset')}); register adapters with register_adapter"
        )
    folder = registry.download(version, Path(dst))
    return folder, AdapterManifest.read(folder), version


def is_adapter(version: ModelVersion) -> bool:
    return version.tags.get(KIND_TAG) == ADAPTER_KIND


class RegistryAdapterSource:
    """The registry as ``hf_local`` sees it when it follows ``models:/NAME@ALIAS`` adapters."""

    def __init__(self, tracking_uri: str) -> None:
        self.registry = ModelRegistry(tracking_uri)
        self.tracking_uri = tracking_uri

    def version_of(self, name: str, ref: str) -> int:
        """The version number ``ref`` of ``name`` points at now."""
        return self.registry.get(name, ref).version

    def download(self, name: str, version: int, dst: Path) -> tuple[Path, dict[str, Any]]:
        """Version ``version`` of adapter ``name`` in ``dst``: its folder and manifest."""
        folder, manifest, _ = download_adapter(self.registry, name, str(version), dst)
        return folder, manifest.to_dict()

    def fingerprint(self, model_dir: Path) -> str:
        return base_model_sha256(model_dir)


def _adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        raise RegistryError(f"no peft adapter at {adapter_dir} (adapter_config.json is missing)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a JSON object")
    return data


def _modules(value: Any) -> tuple[str, ...]:
    """Target modules as a tuple: peft also takes one string ("all-linear", a regex)."""
    if isinstance(value, str):
        return (value,)
    return tuple(str(m) for m in value or ())
