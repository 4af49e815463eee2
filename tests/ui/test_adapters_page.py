"""The console's models page on a RAG app whose ``hf_local`` generator follows a registered
LoRA adapter (a tiny random model and two adapter versions built in the test), in headless
chromium against a real `llmops up`: the app has the playground and the models page; the
adapter's versions are listed with the one answering marked; a promotion in the page is
served before the reply, and a rollback brings the old version back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from playwright.sync_api import Page, expect

from tests.conftest import HASHING, write_corpus
from tests.ui.conftest import Watch
from tests.up_server import llmops_up

pytest.importorskip("peft")
pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_MS = 30_000
MODEL = "console-lora"


@pytest.fixture(scope="module")
def adapter_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from llmops.models import ModelRegistry
    from llmops.models.adapters import AdapterManifest, register_adapter
    from tests.tiny_models import build_lora_adapter, build_tiny_model

    root = tmp_path_factory.mktemp("adapters-page")
    model = build_tiny_model(root / "model")
    registry = ModelRegistry(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"))
    for seed in (1, 2):
        adapter = build_lora_adapter(model, root / f"v{seed}", seed=seed)
        manifest = AdapterManifest.for_adapter(adapter, model)
        register_adapter(registry, MODEL, adapter, manifest, metrics={}, params={}, tags={})
    registry.promote(MODEL, "1")
    write_corpus(root / "docs")
    config = {
        "name": "adapters",
        "data_dir": "data",
        "sources": [{"path": "docs", "include": ["**/*.md", "**/*.txt"]}],
        "embedder": HASHING,
        "generator": {
            "type": "hf_local",
            "model": str(model),
            "max_tokens": 8,
            "adapters": {"support": f"models:/{MODEL}@production"},
            "default_adapter": "support",
            "registry_uri": registry.tracking_uri,
            "adapter_refresh_s": 3600,
        },
    }
    path = root / "adapters.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with llmops_up(path) as (base, _):
        yield base


def test_a_rag_apps_models_page_promotes_and_rolls_back_its_adapter(
    page: tuple[Page, Watch], adapter_app: str
) -> None:
    tab, watch = page
    tab.goto(f"{adapter_app}/ui#models")
    expect(tab.locator("nav a[data-page=playground]")).to_be_visible(timeout=TIMEOUT_MS)
    expect(tab.locator("nav a[data-page=models]")).to_be_visible()
    panel = tab.locator(f"[data-model={MODEL}]")
    first, second = (panel.locator(f"tr[data-version='{v}']") for v in (1, 2))
    expect(first).to_have_class("served", timeout=TIMEOUT_MS)
    expect(first.locator(".served-as")).to_have_text("serving production")
    expect(second.locator(".aliases")).to_have_text("candidate")

    panel.locator("select.promote-to").select_option("production")
    second.locator("button.promote").click()
    expect(tab.locator("#models-result")).to_contain_text("production v1 → v2", timeout=TIMEOUT_MS)
    expect(second).to_have_class("served")
    expect(first.locator(".aliases")).to_have_text("previous")

    panel.locator("button.rollback").click()
    expect(tab.locator("#models-result")).to_contain_text("production v2 → v1", timeout=TIMEOUT_MS)
    expect(first).to_have_class("served")
    expect(second).not_to_have_class("served")
    watch.assert_clean()
