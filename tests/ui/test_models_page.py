"""The console's models page in headless chromium against a real `llmops up` of a model app
(two versions of a small census-like model, keys on): the page asks for a key, lists the
versions with the served one marked and the headline metric plotted; a key without the admin
scope cannot promote (the refusal is shown in the page); with an admin key a promotion makes
the server answer with the new version, and a rollback brings the old one back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect
from typer.testing import CliRunner

from llmops.cli.main import app as cli
from llmops.config.auth import SECRET_ENV
from tests.ml.conftest import train
from tests.ml.test_serving import rows
from tests.ml.test_train import registry, write_app
from tests.ui.conftest import SECRET, Watch, screenshot
from tests.up_server import llmops_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_MS = 30_000
SERVING = "serving: {refresh_s: 3600, auth: {enabled: true, cache_ttl_s: 0}}\n"


class ModelServer:
    def __init__(self, base: str, keys: dict[str, str]) -> None:
        self.base, self.keys = base, keys

    def served_version(self) -> int:
        """The version that answers /predict now."""
        auth = {"Authorization": f"Bearer {self.keys['admin']}"}
        reply = httpx.post(f"{self.base}/predict/adult", json={"rows": rows(1)}, headers=auth)
        assert reply.status_code == 200, reply.text
        version: int = reply.json()["version"]
        return version


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    root = tmp_path_factory.mktemp("models-page")
    config = write_app(root, trials=1)
    config.write_text(config.read_text() + SERVING)
    assert [train(config), train(config)] == [1, 2]
    registry(root).promote("adult", "1")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_ENV, SECRET)
        keys = {scope: create_key(config, scope) for scope in ("admin", "models")}
        with llmops_up(config) as (base, _):
            yield ModelServer(base, keys)


def create_key(config: Path, scope: str) -> str:
    created = CliRunner().invoke(cli, ["keys", "create", str(config), "--scopes", scope])
    assert created.exit_code == 0, created.output
    return created.output.strip().splitlines()[-1]


def enter_key(tab: Page, key: str) -> None:
    expect(tab.locator("#key-panel")).to_be_visible(timeout=TIMEOUT_MS)
    tab.fill("#key-input", key)
    tab.click("#key-form button[type=submit]")
    expect(tab.locator("#key-panel")).to_be_hidden()


def row(tab: Page, version: int) -> Locator:
    return tab.locator(f"[data-model=adult] tr[data-version='{version}']")


def test_models_page_promotes_with_an_admin_key_and_rolls_back(
    page: tuple[Page, Watch], model_server: ModelServer
) -> None:
    tab, watch = page
    with tab.expect_response(lambda r: r.url.endswith("/models/registry") and r.status == 401):
        tab.goto(f"{model_server.base}/ui")
    enter_key(tab, model_server.keys["models"])
    watch.expect_refusals()  # the page's first calls, without a key, were refused
    # the model app has the models page only
    expect(tab.locator("nav a[data-page=models]")).to_be_visible()
    expect(tab.locator("nav a[data-page=playground]")).to_be_hidden()
    expect(tab.locator("#app-name")).to_have_text("adult")
    served, candidate = row(tab, 1), row(tab, 2)
    expect(served).to_have_class("served", timeout=TIMEOUT_MS)
    expect(served.locator(".served-as")).to_have_text("serving production")
    expect(candidate.locator(".aliases")).to_have_text("candidate")
    expect(tab.locator("[data-model=adult] .models-plot svg path.series")).to_be_attached()

    # a key without the admin scope: refused, shown in the page, nothing moved
    tab.select_option("[data-model=adult] select.promote-to", "production")
    with tab.expect_response(lambda r: r.url.endswith("/promote")) as refused:
        candidate.locator("button.promote").click()
    assert refused.value.status == 403
    expect(tab.locator("#models-error")).to_contain_text("lacks the scope 'admin'")
    assert [e for e in watch.errors if "/promote" not in e] == [], watch.errors
    watch.errors.clear()
    assert model_server.served_version() == 1

    tab.click("#key-forget")
    enter_key(tab, model_server.keys["admin"])
    tab.select_option("[data-model=adult] select.promote-to", "production")
    candidate.locator("button.promote").click()
    expect(tab.locator("#models-result")).to_contain_text("production v1 → v2", timeout=TIMEOUT_MS)
    expect(candidate).to_have_class("served")
    expect(candidate.locator(".served-as")).to_have_text("serving production")
    expect(served.locator(".aliases")).to_have_text("previous")
    expect(tab.locator("#models-error")).to_be_empty()
    assert model_server.served_version() == 2
    screenshot(tab, "models")

    tab.click("[data-model=adult] button.rollback")
    expect(tab.locator("#models-result")).to_contain_text("production v2 → v1", timeout=TIMEOUT_MS)
    expect(served).to_have_class("served")
    expect(candidate).not_to_have_class("served")
    assert model_server.served_version() == 1
    watch.assert_clean()
