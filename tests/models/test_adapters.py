"""LoRA adapters as registered versions on a real MLflow registry: the base model hash, the
manifest, registering (nothing half-registered on bad input), downloading, `llmops models`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.errors import RegistryError
from llmops.models import ModelRegistry
from llmops.models.adapters import (
    AdapterManifest,
    base_model_sha256,
    download_adapter,
    register_adapter,
)
from tests.models.conftest import Register
from tests.tiny_models import LORA_TARGETS, build_lora_adapter, build_tiny_model

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    model = build_tiny_model(root / "model")
    return {"model": model, "adapter": build_lora_adapter(model, root / "adapter", seed=1)}


def test_base_model_hash_is_config_then_weights_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "b.safetensors").write_bytes(b"BB")
    (tmp_path / "a.bin").write_bytes(b"AA")
    (tmp_path / "tokenizer.json").write_text("not part of the identity")
    expected = hashlib.sha256(b"{}" + b"AA" + b"BB").hexdigest()
    assert base_model_sha256(tmp_path) == expected
    (tmp_path / "b.safetensors").write_bytes(b"BC")
    assert base_model_sha256(tmp_path) != expected
    with pytest.raises(RegistryError, match=r"no config\.json"):
        base_model_sha256(tmp_path / "missing")


def test_manifest_reads_what_it_wrote_and_names_bad_files(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    manifest = AdapterManifest.for_adapter(tiny["adapter"], tiny["model"], objective="sft")
    assert (manifest.rank, manifest.alpha) == (4, 32.0)
    assert manifest.target_modules == tuple(sorted(LORA_TARGETS))
    assert manifest.base_model_sha256 == base_model_sha256(tiny["model"])
    manifest.write(tmp_path)
    assert AdapterManifest.read(tmp_path) == manifest
    (tmp_path / "manifest.json").write_text('{"base_model": "x",\n "rank": }')
    with pytest.raises(RegistryError, match=r"manifest.json:2:"):
        AdapterManifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"base_model": "x", "rank": 4}))
    with pytest.raises(RegistryError, match="missing alpha, base_model_sha256"):
        AdapterManifest.read(tmp_path)


def test_register_and_download_an_adapter(
    registry: ModelRegistry, tiny: dict[str, Path], tmp_path: Path
) -> None:
    manifest = AdapterManifest.for_adapter(tiny["adapter"], tiny["model"])
    job = tmp_path / "job.yaml"
    job.write_text("kind: finetune\n")
    version = register_adapter(
        registry, "reg-lora", tiny["adapter"], manifest,
        metrics={"eval_loss": 1.5}, params={"r": 4}, tags={"data_sha256": "cd34"},
        extra_files=[job],
    )  # fmt: skip
    assert version.aliases == ("candidate",) and version.version == 1
    assert version.tags["llmops.kind"] == "adapter"
    assert version.tags["adapter.rank"] == "4"
    assert version.tags["adapter.target_modules"] == "q_proj,v_proj"
    assert version.tags["adapter.base_model_sha256"] == manifest.base_model_sha256
    assert version.metrics == {"eval_loss": 1.5} and version.source.endswith("/adapter")
    folder, read, same = download_adapter(registry, "reg-lora", "candidate", tmp_path / "dl")
    assert same.version == 1 and read == manifest
    assert (folder / "adapter_config.json").is_file()
    assert (folder / "adapter_model.safetensors").read_bytes() == (
        tiny["adapter"] / "adapter_model.safetensors"
    ).read_bytes()
    assert (folder / "job" / "job.yaml").read_text() == "kind: finetune\n"


def test_bad_input_registers_nothing(
    registry: ModelRegistry, tiny: dict[str, Path], tmp_path: Path
) -> None:
    manifest = AdapterManifest.for_adapter(tiny["adapter"], tiny["model"])
    with pytest.raises(RegistryError, match=r"adapter_config\.json is missing"):
        register_adapter(registry, "half-lora", tmp_path, manifest, metrics={}, params={}, tags={})
    with pytest.raises(RegistryError, match="extra file not found"):
        register_adapter(
            registry, "half-lora", tiny["adapter"], manifest,
            metrics={}, params={}, tags={}, extra_files=[tmp_path / "nope.yaml"],
        )  # fmt: skip
    assert "half-lora" not in registry.names()


def test_a_plain_model_is_not_downloaded_as_an_adapter(
    registry: ModelRegistry, register: Register, tmp_path: Path
) -> None:
    register("plain-model")
    with pytest.raises(RegistryError, match="is not an adapter"):
        download_adapter(registry, "plain-model", "candidate", tmp_path)


def test_models_list_and_show_mark_adapters(
    registry: ModelRegistry, register: Register, tiny: dict[str, Path]
) -> None:
    manifest = AdapterManifest.for_adapter(tiny["adapter"], tiny["model"])
    register_adapter(registry, "cli-lora", tiny["adapter"], manifest, metrics={}, params={},
                     tags={})  # fmt: skip
    register("cli-sklearn")
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--tracking-uri", registry.tracking_uri])
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[1]: line for line in listed.stdout.splitlines() if "cli-" in line}
    assert "adapter" in rows["cli-lora"] and "adapter" not in rows["cli-sklearn"]
    shown = runner.invoke(app, ["models", "show", "cli-lora", "--tracking-uri",
                                registry.tracking_uri])  # fmt: skip
    assert shown.exit_code == 0 and "kind: adapter" in shown.stdout
    assert "adapter.rank" in shown.stdout and "adapter.base_model_sha256" in shown.stdout
