"""`llmops finetune publish vllm`: a registered adapter loaded into a running vLLM server under
a versioned name, older versions unloaded on request, and clear errors when the server refuses
(runtime updating off, bad path, wrong key) or does not answer. The server is a local stub of
vLLM's runtime LoRA API (tests/stubs/vllm_lora_server.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.errors import BackendError
from llmops.models import ModelRegistry
from llmops.models.adapter_export import VllmLora, publish_to_vllm
from llmops.models.adapters import AdapterManifest, register_adapter
from tests.stubs import vllm_lora_server
from tests.stubs.vllm_lora_server import Behaviour


def adapter_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4}))
    return folder


async def test_loads_under_the_versioned_name_and_unloads_older_versions(tmp_path: Path) -> None:
    behaviour = Behaviour(loaded={"support-v1": "/old/v1", "other-v1": "/x"})
    v2 = VllmLora("support-v2", str(adapter_folder(tmp_path, "v2")), 8)
    with vllm_lora_server.serve(behaviour) as url:
        done = await publish_to_vllm(url, v2, unload_older=True)
        again = await publish_to_vllm(f"{url}/v1", v2)
    assert (done.lora_name, done.already_loaded, done.unloaded) == (
        "support-v2",
        False,
        ["support-v1"],
    )
    assert again.already_loaded and again.unloaded == []
    assert behaviour.loaded == {"other-v1": "/x", "support-v2": v2.lora_path}
    assert behaviour.requests[0] == ("load", {"lora_name": "support-v2", "lora_path": v2.lora_path})


@pytest.mark.parametrize("flat", [False, True])
async def test_a_refusal_shows_the_servers_message(tmp_path: Path, flat: bool) -> None:
    missing = VllmLora("support-v3", str(tmp_path / "nowhere"), 8)
    with (
        vllm_lora_server.serve(Behaviour(flat_errors=flat)) as url,
        pytest.raises(BackendError) as caught,
    ):
        await publish_to_vllm(url, missing)
    assert "400" in str(caught.value)
    assert f"No adapter found for {missing.lora_path}" in str(caught.value)


async def test_runtime_updating_off_names_the_setting(tmp_path: Path) -> None:
    lora = VllmLora("support-v1", str(adapter_folder(tmp_path, "v1")), 8)
    off = Behaviour(runtime_updating=False)
    with vllm_lora_server.serve(off) as url, pytest.raises(BackendError) as caught:
        await publish_to_vllm(url, lora)
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in str(caught.value)


async def test_the_api_key_is_sent_and_a_wrong_one_is_reported(tmp_path: Path) -> None:
    lora = VllmLora("support-v1", str(adapter_folder(tmp_path, "v1")), 8)
    behaviour = Behaviour(api_key="sekret")
    with vllm_lora_server.serve(behaviour) as url:
        with pytest.raises(BackendError, match="401: Unauthorized"):
            await publish_to_vllm(url, lora, api_key="wrong")
        await publish_to_vllm(url, lora, api_key="sekret")
    assert "support-v1" in behaviour.loaded


async def test_a_server_that_does_not_answer_times_out(tmp_path: Path) -> None:
    lora = VllmLora("support-v1", str(adapter_folder(tmp_path, "v1")), 8)
    with vllm_lora_server.serve(Behaviour(delay_s=2.0)) as url:
        start = time.monotonic()
        with pytest.raises(BackendError, match=r"did not answer within 0\.3s"):
            await publish_to_vllm(url, lora, timeout_s=0.3)
        assert time.monotonic() - start < 1.5


async def test_a_server_that_is_down_is_reported() -> None:
    lora = VllmLora("support-v1", "/a", 8)
    with pytest.raises(BackendError, match=r"cannot reach http://127\.0\.0\.1:9"):
        await publish_to_vllm("http://127.0.0.1:9", lora, timeout_s=2)


def test_cli_publishes_a_registered_version_and_unloads_the_previous(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from tests.tiny_models import build_lora_adapter, build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"))
    versions = []
    for seed in (1, 2):
        adapter = build_lora_adapter(model, tmp_path / f"a{seed}", seed=seed)
        manifest = AdapterManifest.for_adapter(adapter, model)
        version = register_adapter(
            registry, "pub-lora", adapter, manifest, metrics={}, params={}, tags={}
        )
        versions.append(version.version)
    registry.promote("pub-lora", str(versions[1]))
    behaviour = Behaviour(loaded={f"pub-lora-v{versions[0]}": "/old"})
    args = ["finetune", "publish", "vllm", "pub-lora@production", "--tracking-uri",
            registry.tracking_uri, "--dir", str(tmp_path / "dl"), "--unload-older"]  # fmt: skip
    with vllm_lora_server.serve(behaviour) as url:
        result = CliRunner().invoke(app, [*args, "--url", url])
    with vllm_lora_server.serve(Behaviour()) as url:
        refused = CliRunner().invoke(app, [*args, "--url", url, "--server-dir", "/nowhere"])
    assert result.exit_code == 0, result.output
    name = f"pub-lora-v{versions[1]}"
    assert f"{name} loaded" in result.stdout
    assert list(behaviour.loaded) == [name]
    assert (Path(behaviour.loaded[name]) / "adapter_config.json").is_file()
    assert refused.exit_code == 1
    assert f"/nowhere/pub-lora/v{versions[1]}" in refused.output


def test_promote_with_vllm_urls_loads_the_promoted_adapter_into_each_server(
    tmp_path: Path,
) -> None:
    pytest.importorskip("peft")
    from tests.tiny_models import build_lora_adapter, build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"))
    for seed in (1, 2):
        adapter = build_lora_adapter(model, tmp_path / f"a{seed}", seed=seed)
        manifest = AdapterManifest.for_adapter(adapter, model)
        register_adapter(registry, "pro-lora", adapter, manifest, metrics={}, params={}, tags={})
    registry.promote("pro-lora", "1")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.txt").write_text("not an adapter")
    registry.register_folder("tabular", plain, metrics={}, params={}, tags={})
    first, second = Behaviour(loaded={"pro-lora-v1": "/old"}), Behaviour()
    base = ["models", "promote", "--tracking-uri", registry.tracking_uri,
            "--dir", str(tmp_path / "dl")]  # fmt: skip
    with vllm_lora_server.serve(first) as one, vllm_lora_server.serve(second) as two:
        result = CliRunner().invoke(
            app, [*base, "pro-lora", "--vllm-url", one, "--vllm-url", two, "--unload-older"]
        )
        refused = CliRunner().invoke(app, [*base, "tabular", "--from", "1", "--vllm-url", one])
    assert result.exit_code == 0, result.output
    assert "pro-lora: production 1 -> 2 (previous: 1)" in result.stdout
    assert list(first.loaded) == ["pro-lora-v2"] and list(second.loaded) == ["pro-lora-v2"]
    assert registry.get("pro-lora", "production").version == 2
    assert refused.exit_code == 1 and "not a LoRA adapter" in refused.output
    assert "production" not in registry.get("tabular", "1").aliases  # nothing moved
