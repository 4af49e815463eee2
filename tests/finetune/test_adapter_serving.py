"""Registered LoRA adapters served by ``hf_local`` through an alias: answers with the alias's
version, swaps to a promoted version while concurrent requests keep running (none fails),
refuses an adapter trained on another base model (the old one keeps serving), rolls out as an
experiment variant, renders vLLM flags, and merges into a folder transformers loads.

Tiny random models built in the test (tests/tiny_models.py): the text is gibberish, so the
tests compare answers with those of the same adapter served from its folder, never content."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.errors import BackendError
from llmops.generation.hf_local import HFLocalGenerator
from llmops.models import ModelRegistry
from llmops.models.adapters import AdapterManifest, RegistryAdapterSource, register_adapter
from llmops.testing.generator_contract import PROMPT
from llmops.types import GenerationOptions, GenerationRequest
from tests.conftest import HASHING, ConfigWriter
from tests.tiny_models import build_lora_adapter, build_tiny_model

pytest.importorskip("peft")
pytest.importorskip("transformers")

REF = "models:/{}@production"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The base model, adapters v1/v2 (rank 4), v3 (rank 8) for it, and another base model."""
    root = tmp_path_factory.mktemp("serving")
    model = build_tiny_model(root / "model")
    other = build_tiny_model(root / "other-model", seed=7)
    return {
        "model": model,
        "v1": build_lora_adapter(model, root / "v1", seed=1),
        "v2": build_lora_adapter(model, root / "v2", seed=2),
        "v3": build_lora_adapter(model, root / "v3", seed=3, rank=8),
        "other": other,
        "foreign": build_lora_adapter(other, root / "foreign", seed=4),
    }


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    root = tmp_path_factory.mktemp("registry")
    return ModelRegistry(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"))


@pytest.fixture
async def started() -> AsyncGenerator[list[HFLocalGenerator], None]:
    generators: list[HFLocalGenerator] = []
    yield generators
    for generator in generators:
        await generator.close()


def publish(
    registry: ModelRegistry, name: str, adapter: Path, base: Path, promote: bool = True
) -> int:
    """Register ``adapter`` (trained on ``base``) as a new version of ``name``; promote it."""
    manifest = AdapterManifest.for_adapter(adapter, base)
    version = register_adapter(registry, name, adapter, manifest, metrics={}, params={}, tags={})
    if promote:
        registry.promote(name, str(version.version))
    return version.version


async def serve(
    started: list[HFLocalGenerator], model: Path, adapters: dict[str, str], **settings: Any
) -> HFLocalGenerator:
    settings.setdefault("max_tokens", 12)
    config = HFLocalGenerator.Config(model=str(model), adapters=adapters, **settings)
    generator = HFLocalGenerator(config, adapter_source=RegistryAdapterSource)
    await generator.start()
    started.append(generator)
    return generator


def ask(adapter: str | None = None) -> GenerationRequest:
    options = GenerationOptions(adapter=adapter)
    return GenerationRequest("How do I restore a backup?", (), PROMPT, options)


async def expected_texts(
    started: list[HFLocalGenerator], tiny: dict[str, Path], *names: str
) -> dict[str, str]:
    """What each adapter answers when served from its folder."""
    direct = await serve(started, tiny["model"], {n: str(tiny[n]) for n in names})
    texts = {n: (await direct.generate(ask(n))).text for n in names}
    texts["base"] = (await direct.generate(ask("base"))).text
    assert len(set(texts.values())) == len(texts), "the adapters must answer differently"
    return texts


async def test_serves_the_alias_and_swaps_on_promotion_without_a_failed_request(
    registry: ModelRegistry, tiny: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    texts = await expected_texts(started, tiny, "v1", "v2", "v3")
    publish(registry, "support-lora", tiny["v1"], tiny["model"])
    generator = await serve(
        started, tiny["model"], {"support": REF.format("support-lora")},
        default_adapter="support", adapter_refresh_s=0.2, max_concurrency=2,
        registry_uri=registry.tracking_uri,
    )  # fmt: skip
    assert (await generator.generate(ask())).text == texts["v1"]
    assert generator.adapter_status()["support"]["version"] == 1

    answers: list[str] = []
    failures: list[BaseException] = []
    running = True

    async def client() -> None:
        while running:
            try:
                answers.append((await generator.generate(ask())).text)
            except Exception as exc:  # counted: the test demands none
                failures.append(exc)

    clients = [asyncio.create_task(client()) for _ in range(4)]
    await asyncio.sleep(0.5)
    promoted_at = time.monotonic()
    await asyncio.to_thread(publish, registry, "support-lora", tiny["v2"], tiny["model"])
    while generator.adapter_status()["support"]["version"] != 2:
        assert time.monotonic() - promoted_at < 15, generator.adapter_status()
        await asyncio.sleep(0.05)
    swapped_in_s = time.monotonic() - promoted_at
    after = len(answers)
    await asyncio.sleep(0.5)
    running = False
    await asyncio.gather(*clients)

    assert failures == []
    assert set(answers) == {texts["v1"], texts["v2"]}  # only ever whole answers of one version
    assert set(answers[after + 4 :]) == {texts["v2"]}  # at most the 4 in flight finish on v1
    status = generator.adapter_status()["support"]
    assert (status["swaps"], status["last_swap"]) == (1, "hotswap")
    assert swapped_in_s < 0.2 + 10  # one refresh interval plus the download and the swap

    # another rank cannot be hot-swapped: loaded beside the old one, then switched to
    publish(registry, "support-lora", tiny["v3"], tiny["model"])
    # the follower's own poll (every 0.2 s) may swap it first; then this one finds it done
    assert await generator.refresh_adapters() in (["support"], [])
    status = generator.adapter_status()["support"]
    assert (status["version"], status["swaps"], status["last_swap"]) == (3, 2, "reload")
    assert (await generator.generate(ask())).text == texts["v3"]
    assert (await generator.generate(ask("base"))).text == texts["base"]


async def test_an_adapter_for_another_base_model_is_refused_and_the_old_one_serves(
    registry: ModelRegistry,
    tiny: dict[str, Path],
    started: list[HFLocalGenerator],
    caplog: pytest.LogCaptureFixture,
) -> None:
    texts = await expected_texts(started, tiny, "v1")
    publish(registry, "guarded-lora", tiny["v1"], tiny["model"])
    generator = await serve(
        started, tiny["model"], {"support": REF.format("guarded-lora")},
        default_adapter="support", adapter_refresh_s=600, registry_uri=registry.tracking_uri,
    )  # fmt: skip
    version = publish(registry, "guarded-lora", tiny["foreign"], tiny["other"])
    with caplog.at_level(logging.WARNING, logger="llmops.generation.hf_adapters"):
        assert await generator.refresh_adapters() == []
    status = generator.adapter_status()["support"]
    assert status["version"] == 1 and list(status["rejected"]) == [version]
    reason = status["rejected"][version]
    assert "trained on base model 'other-model'" in reason and "serves 'model'" in reason
    assert "still serving version 1" in caplog.text
    assert (await generator.generate(ask())).text == texts["v1"]
    assert await generator.refresh_adapters() == []  # a refused version is not retried

    # starting on a refused version has no old adapter to fall back on: a clear error
    with pytest.raises(BackendError, match="trained on base model 'other-model'"):
        await serve(
            started, tiny["model"], {"support": REF.format("guarded-lora")},
            registry_uri=registry.tracking_uri,
        )  # fmt: skip


async def test_rank_above_the_limit_is_refused_at_start(
    registry: ModelRegistry, tiny: dict[str, Path], started: list[HFLocalGenerator]
) -> None:
    publish(registry, "wide-lora", tiny["v3"], tiny["model"])
    with pytest.raises(BackendError, match="rank 8 is above this server's max_adapter_rank=4"):
        await serve(
            started, tiny["model"], {"support": REF.format("wide-lora")},
            registry_uri=registry.tracking_uri, max_adapter_rank=4,
        )  # fmt: skip


def test_a_malformed_registry_reference_fails_validation(tiny: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"write models:/NAME@ALIAS"):
        HFLocalGenerator.Config(model=str(tiny["model"]), adapters={"s": "models:/a@b@c"})


def test_an_experiment_variant_rolls_out_the_candidate_adapter(
    registry: ModelRegistry, tiny: dict[str, Path], write_config: ConfigWriter
) -> None:
    from llmops import RAG

    publish(registry, "canary-lora", tiny["v1"], tiny["model"], promote=False)
    base = {"type": "hf_local", "model": str(tiny["model"]), "max_tokens": 8}
    adapted = {
        **base,
        "adapters": {"support": "models:/canary-lora@candidate"},
        "default_adapter": "support",
        "registry_uri": registry.tracking_uri,
    }
    experiment = {
        "name": "adapter-rollout",
        "strategy": "canary",
        "variants": {"stable": {}, "next": {"generator": adapted}},
        "canary": {"variant": "next", "stages": [0.5, 1.0], "window": 4},
    }
    config = write_config(embedder=HASHING, generator=base, experiment=experiment)
    answers: dict[str, set[str]] = {}
    with RAG.from_config(config) as rag:
        rag.ingest()
        for i in range(24):
            answer = rag.query("How do I restore a backup?", user=f"u{i}")
            answers.setdefault(answer.variant, set()).add(answer.answer)
    assert set(answers) == {"stable", "next"}
    assert len(answers["next"]) == 1 and answers["next"] != answers["stable"]


def adapter_variants(
    registry: ModelRegistry, tiny: dict[str, Path], name: str
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """An hf_local generator serving NAME@production (v1) and NAME@candidate (v2) on one base
    model, and two variants answering with one each."""
    publish(registry, name, tiny["v1"], tiny["model"])
    publish(registry, name, tiny["v2"], tiny["model"], promote=False)
    generator = {
        "type": "hf_local",
        "model": str(tiny["model"]),
        "max_tokens": 8,
        "adapters": {"prod": f"models:/{name}@production", "cand": f"models:/{name}@candidate"},
        "registry_uri": registry.tracking_uri,
    }
    return generator, {"stable": {"adapter": "prod"}, "next": {"adapter": "cand"}}


def test_a_canary_of_an_adapter_variant_rolls_back_with_the_reason(
    registry: ModelRegistry, tiny: dict[str, Path], write_config: ConfigWriter
) -> None:
    """Variants name adapters of one generator (one base model loaded); the candidate's canary
    breaks its latency bound, is rolled back, and every request is then the production
    adapter's answer."""
    from llmops import RAG

    generator, variants = adapter_variants(registry, tiny, "rollback-lora")
    experiment = {
        "name": "adapter-rollback",
        "strategy": "canary",
        "variants": variants,
        "canary": {"variant": "next", "stages": [0.5, 1.0], "window": 3, "max_p95_ms": 0.001},
    }
    config = write_config(embedder=HASHING, generator=generator, experiment=experiment)
    answers: dict[str, set[str]] = {}
    with RAG.from_config(config) as rag:
        rag.ingest()
        served = [rag.query("How do I restore a backup?", user=f"u{i}") for i in range(30)]
        report = rag.experiment_report()
    assert report is not None
    for answer in served:
        answers.setdefault(answer.variant, set()).add(answer.answer)
    assert set(answers) == {"stable", "next"} and answers["next"] != answers["stable"]
    assert len(answers["stable"]) == 1  # one adapter, greedy: one answer
    canary = report["variants"]["next"]["canary"]
    assert canary["rolled_back"] and "p95" in canary["reason"], canary
    first_after = next(i for i, a in enumerate(served) if a.variant == "next") + 3
    assert all(a.variant == "stable" for a in served[first_after + 3 :])


def test_thompson_sampling_moves_traffic_to_the_adapter_users_reward(
    registry: ModelRegistry, tiny: dict[str, Path], write_config: ConfigWriter
) -> None:
    from llmops import RAG

    generator, variants = adapter_variants(registry, tiny, "bandit-lora")
    # warmup: each variant answers twice before the posterior decides (else, 1 run in 21,
    # "next" wins every draw from the first reward on and "stable" is never tried)
    experiment = {
        "name": "adapter-bandit",
        "strategy": "thompson",
        "variants": variants,
        "warmup": 2,
    }
    config = write_config(embedder=HASHING, generator=generator, experiment=experiment)
    chosen: list[str] = []
    with RAG.from_config(config) as rag:
        rag.ingest()
        for i in range(40):
            answer = rag.query("How do I restore a backup?", user=f"u{i}")
            chosen.append(answer.variant)
            rag.feedback(answer.request_id, 1.0 if answer.variant == "next" else 0.0)
    assert "stable" in chosen[:20]  # both were tried
    assert chosen[20:].count("next") >= 14, chosen


def test_render_vllm_prints_versioned_lora_flags(
    registry: ModelRegistry, tiny: dict[str, Path]
) -> None:
    version = publish(registry, "render-lora", tiny["v1"], tiny["model"])
    result = CliRunner().invoke(
        app,
        ["finetune", "render", "vllm", "render-lora@production", "--tracking-uri",
         registry.tracking_uri, "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rendered = json.loads(result.stdout)
    name = f"render-lora-v{version}"
    assert rendered["lora_name"] == name
    path = rendered["lora_path"]
    assert (Path(path) / "adapter_config.json").is_file()
    assert rendered["flags"] == [
        "--enable-lora", "--lora-modules", f"{name}={path}", "--max-lora-rank", "8",
    ]  # fmt: skip
    assert rendered["load_lora_adapter"] == {"lora_name": name, "lora_path": path}


def test_merge_writes_a_model_whose_logits_equal_the_peft_models(
    registry: ModelRegistry, tiny: dict[str, Path], tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    publish(registry, "merge-lora", tiny["v2"], tiny["model"])
    out = tmp_path / "merged"
    result = CliRunner().invoke(
        app,
        ["finetune", "merge", "merge-lora@production", "--base", str(tiny["model"]), "-o",
         str(out), "--tracking-uri", registry.tracking_uri],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    tokens = AutoTokenizer.from_pretrained(out)("To restore a backup", return_tensors="pt")
    base = AutoModelForCausalLM.from_pretrained(tiny["model"], dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, tiny["v2"]).eval()
    with torch.no_grad():
        expected = peft_model(**tokens).logits
        got = merged.eval()(**tokens).logits
        with peft_model.disable_adapter():
            plain = peft_model(**tokens).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain, expected)  # the adapter did something


def test_a_rag_app_lists_promotes_and_rolls_back_its_registered_adapter(
    registry: ModelRegistry, tiny: dict[str, Path], write_config: ConfigWriter
) -> None:
    """GET /models/registry of a RAG app lists the adapter model its generator follows, with
    the version answering; a promotion through the API is served before the reply (no wait
    for the refresh period), a rollback brings the old answer back, and the console has the
    models page. An app following no registered adapter has neither."""
    from fastapi.testclient import TestClient

    from llmops import RAG
    from llmops.server import create_app

    publish(registry, "page-lora", tiny["v1"], tiny["model"])
    publish(registry, "page-lora", tiny["v2"], tiny["model"], promote=False)
    generator = {
        "type": "hf_local",
        "model": str(tiny["model"]),
        "max_tokens": 8,
        "adapters": {"support": "models:/page-lora@production"},
        "default_adapter": "support",
        "registry_uri": registry.tracking_uri,
        "adapter_refresh_s": 3600,
    }
    question = {"question": "How do I restore a backup?"}
    config = write_config(embedder=HASHING, generator=generator)
    with RAG.from_config(config) as rag, TestClient(create_app(rag)) as client:
        rag.ingest()
        listed = client.get("/models/registry").json()["models"]
        assert [(m["name"], m["alias"], m["served"]) for m in listed] == [
            ("page-lora", "production", {"production": 1})
        ]
        versions = {v["version"]: v for v in listed[0]["versions"]}
        assert versions[1]["served_as"] == ["production"] and versions[2]["served_as"] == []
        assert versions[2]["aliases"] == ["candidate"]
        first = client.post("/query", json=question).json()["answer"]

        moved = client.post("/models/page-lora/promote", json={"ref": "candidate"})
        assert moved.status_code == 200, moved.text
        assert moved.json() | {"served": None} == {
            "model": "page-lora",
            "alias": "production",
            "version": 2,
            "before": 1,
            "served": None,
        }
        assert moved.json()["served"] == {"production": 2}
        second = client.post("/query", json=question).json()["answer"]
        assert second != first

        back = client.post("/models/page-lora/rollback")
        assert back.json()["served"] == {"production": 1}, back.text
        assert client.post("/query", json=question).json()["answer"] == first
        unknown = client.post("/models/other/promote", json={})
        assert unknown.status_code == 404 and "serves 'page-lora'" in unknown.text
        assert "models" in client.get("/ui/pages").json()["pages"]

    plain = write_config(embedder=HASHING)
    with RAG.from_config(plain) as rag, TestClient(create_app(rag)) as client:
        assert client.get("/models/registry").status_code == 404
        assert "models" not in client.get("/ui/pages").json()["pages"]
