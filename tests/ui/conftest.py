"""A real `llmops up` (API keys on, an A/B experiment, tracing kept in memory) and headless
Debian chromium driven by Playwright, for the web console's tests.

Playwright's own browser download is never used: the tests launch ``/usr/bin/chromium``
(installed by ``.ci/run``) and skip, saying so, only where it is absent. Every page a test
opens records its console errors, uncaught exceptions and the hosts it sent requests to.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright
from typer.testing import CliRunner

from llmops.cli.main import app as cli
from llmops.config.auth import SECRET_ENV
from tests.conftest import write_corpus
from tests.up_server import llmops_up

CHROMIUM = Path("/usr/bin/chromium")
SECRET = "console-test-secret-0123456789abcdef"
FAILED_LOAD = "Failed to load resource: the server responded with a status of"
SCREENSHOTS_ENV = "LLMOPS_CONSOLE_SCREENSHOTS"
"""A folder to save the pages' screenshots in (docs/images for docs/console.md)."""


@dataclass
class Server:
    base: str
    key: str


@dataclass
class Watch:
    """What a page did that a test checks afterwards."""

    errors: list[str] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)

    def console(self, text: str) -> None:
        # the browser echoes each failed response as a console error; ``response`` has those
        if not text.startswith(FAILED_LOAD):
            self.errors.append(text)

    def response(self, status: int, url: str) -> None:
        if status >= 400:
            self.errors.append(f"{status} {url}")

    def expect_refusals(self) -> None:
        """The errors so far must all be the app's 401s (a call without a key, or with a
        wrong one); forget them."""
        assert self.errors and all(e.startswith("401 ") for e in self.errors), self.errors
        self.errors.clear()

    def assert_clean(self) -> None:
        assert not self.errors, self.errors
        assert self.hosts <= {"127.0.0.1"}, f"requests left the machine: {self.hosts}"


def app_config(root: Path) -> Path:
    write_corpus(root / "docs")
    data: dict[str, Any] = {
        "name": "console",
        "data_dir": "data",
        "sources": [{"path": "docs", "include": ["**/*.md", "**/*.txt"]}],
        "chunker": {"type": "markdown", "chunk_size": 300, "chunk_overlap": 30},
        "embedder": {"type": "sentence_transformers", "model": "bundled"},
        "generator": {"type": "extractive"},
        "retrieval": {"top_k": 3},
        "server": {"auth": {"enabled": True, "cache_ttl_s": 0}},
        "monitoring": {
            "tracing": {"enabled": True, "exporter": "none", "keep_recent": 50},
            # checked every 20 queries against short questions (test_drift asks long ones)
            "drift": {
                "reference": {"dataset": "reference.jsonl"},
                "window": 20,
                "every_requests": 20,
                "every_minutes": None,
            },
        },
        "experiment": {
            "name": "passages",
            "strategy": "weighted",
            "key": "x-user-id",
            "variants": {"control": {}, "wide": {"retrieval": {"top_k": 5}}},
            "weights": {"control": 50, "wide": 50},
        },
    }
    topics = ("backup", "install", "price", "colour", "restore", "version")
    questions = [f"{verb} {topic}?" for verb in ("Why", "How", "When", "What") for topic in topics]
    lines = [json.dumps({"question": q}) for q in questions]
    (root / "reference.jsonl").write_text("\n".join(lines) + "\n")
    path = root / "console.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = app_config(tmp_path_factory.mktemp("console"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_ENV, SECRET)
        created = CliRunner().invoke(cli, ["keys", "create", str(config), "--scopes", "admin"])
        assert created.exit_code == 0, created.output
        key = created.output.strip().splitlines()[-1]
        with llmops_up(config) as (base, _):
            yield Server(base, key)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium): the console's "
                    "browser tests drive Debian's chromium")  # fmt: skip
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, Watch]]:
    """A fresh tab (empty sessionStorage) and what it is watched for."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    watch = Watch()
    tab.on("console", lambda m: m.type == "error" and watch.console(m.text))
    tab.on("pageerror", lambda exc: watch.errors.append(str(exc)))
    tab.on("request", lambda r: watch.hosts.add(urlsplit(r.url).hostname or r.url))
    tab.on("response", lambda r: watch.response(r.status, r.url))
    yield tab, watch
    context.close()


def screenshot(tab: Page, name: str) -> None:
    """Save the page as ``console-NAME.png`` where ``LLMOPS_CONSOLE_SCREENSHOTS`` says."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if not folder:
        return
    raw = Image.open(io.BytesIO(tab.screenshot(full_page=True)))
    # a palette of 256 colours keeps a page under 150 KB for the docs
    out = Path(folder) / f"console-{name}.png"
    raw.convert("RGB").quantize(colors=256).save(out, optimize=True)
