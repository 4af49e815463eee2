"""The experiments page of the console draws a canary's history: a real `llmops up` whose
canary answers through a stub backend that is healthy (the ramp advances), then fails (it is
rolled back); the page shows both moves, newest first, with their numbers, and the share over
time, without console errors or requests leaving the machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Page, expect

from tests.conftest import write_corpus
from tests.stubs.openai_server import Behaviour, serve
from tests.ui.conftest import Watch, screenshot
from tests.up_server import llmops_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_MS = 30_000
WINDOW = 3


def canary_config(root: Path, backend: str) -> Path:
    write_corpus(root / "docs")
    generator = {"type": "openai_compat", "base_url": backend, "model": "tiny", "max_retries": 0}
    data = {
        "name": "rollout",
        "data_dir": "data",
        "sources": [{"path": "docs", "include": ["**/*.md", "**/*.txt"]}],
        "embedder": {"type": "hashing"},
        "generator": {"type": "extractive"},
        "experiment": {
            "name": "rollout",
            "strategy": "canary",
            "variants": {"stable": {}, "next": {"generator": generator}},
            "canary": {
                "variant": "next",
                "stages": [0.25, 0.5, 1.0],
                "window": WINDOW,
                "max_error_rate": 0.34,  # one error per window allowed, two roll it back
            },
        },
    }
    path = root / "rollout.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[Behaviour, str]]:
    behaviour = Behaviour()
    with serve(behaviour) as url:
        yield behaviour, url


def ask_until(http: httpx.Client, moved: str, users: Iterator[int]) -> None:
    """Ask as new users until the canary's history holds a move ``moved``."""
    for user in users:
        reply = http.post(
            "/query",
            json={"question": "How do I restore a backup?"},
            headers={"x-user-id": f"u{user}"},
        )
        assert reply.status_code == 200, reply.text
        ramp = http.get("/experiments").json()["variants"]["next"]["canary"]
        if ramp["history"] and ramp["history"][0]["move"] == moved:
            return
    raise AssertionError(f"the canary never {moved}")


def test_experiments_page_shows_the_canarys_moves_and_its_share_over_time(
    page: tuple[Page, Watch],
    backend: tuple[Behaviour, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    behaviour, url = backend
    config = canary_config(tmp_path_factory.mktemp("canary"), url)
    with llmops_up(config) as (base, _), httpx.Client(base_url=base, timeout=30) as http:
        users = iter(range(1000))
        ask_until(http, "advanced", users)  # healthy: 25 % -> 50 %
        behaviour.fail_times = 1000
        ask_until(http, "rolled_back", users)  # failing: back to 0 %
        tab, watch = page
        tab.goto(f"{base}/ui#experiments")
        rows = tab.locator("#canary-history tbody tr")
        expect(rows).to_have_count(2, timeout=TIMEOUT_MS)
        expect(rows.nth(0)).to_contain_text("rolled back")
        expect(rows.nth(0)).to_contain_text("2 (50 %) → 2 (0 %)")
        expect(rows.nth(0)).to_contain_text("error rate 2/")
        expect(rows.nth(1)).to_contain_text("advanced")
        expect(rows.nth(1)).to_contain_text("1 (25 %) → 2 (50 %)")
        expect(rows.nth(1)).to_contain_text(f"0 errors in {WINDOW} requests")
        expect(tab.locator("#canary svg path.series")).to_be_attached()
        screenshot(tab, "canary")
        watch.assert_clean()
