"""The console's evaluations page and the drift history, in headless chromium against a real
`llmops up` with API keys on: two eval runs made by the real runner on the test corpus are
listed with their gate verdicts, the newest is shown in full, the two are compared (head − base
with intervals, swapped on request) and the HTML report is saved with the key; drift checks
made before the app was restarted are still on the drift page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Page, expect
from typer.testing import CliRunner

from llmops.cli.main import app as cli
from llmops.config.auth import SECRET_ENV
from tests.eval_runs_data import APP, FAILING, two_runs
from tests.ui.conftest import SECRET, Server, Watch, app_config, screenshot
from tests.ui.test_console import TIMEOUT_MS, open_console
from tests.up_server import llmops_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LONG = "Could you explain in detail, step by step, everything about {} in Widgetron?"


def drive_drift(base: str, key: str) -> None:
    """20 of the reference's own questions, then 20 long ones: two checks, the second an
    alert."""
    topics = ("backup", "install", "price", "colour", "restore", "version")
    reference = [f"{verb} {topic}?" for verb in ("Why", "How", "When", "What") for topic in topics]
    like = [q for i, q in enumerate(reference) if i % 7]  # 20 of the 24
    long = [LONG.format(topic) for topic in ("backups", "pricing", "installing", "colours")] * 5
    with httpx.Client(base_url=base, headers=_bearer(key), timeout=30) as http:
        for batch, kept in ((like, 1), (long, 2)):
            for question in batch:
                assert http.post("/query", json={"question": question}).status_code == 200
            deadline = time.monotonic() + 60
            while http.get("/drift").json()["kept"] < kept:  # checks run in the background
                assert time.monotonic() < deadline, f"no drift check {kept} after 20 queries"
                time.sleep(0.2)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def evals_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The console's test app with two eval runs in its runs folder and two drift checks made
    by an earlier `llmops up` of it, served by a new one."""
    config = app_config(tmp_path_factory.mktemp("evals-console"))
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, **APP}, sort_keys=False))
    with ThreadPoolExecutor(1) as thread:  # the runner's asyncio.run: not on Playwright's loop
        thread.submit(two_runs, config).result()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_ENV, SECRET)
        created = CliRunner().invoke(cli, ["keys", "create", str(config), "--scopes", "admin"])
        assert created.exit_code == 0, created.output
        key = created.output.strip().splitlines()[-1]
        with llmops_up(config) as (base, _):
            drive_drift(base, key)
        with llmops_up(config) as (base, _):  # restarted
            yield Server(base, key)


def _signs(tab: Page) -> dict[str, str]:
    """The sign each row of the comparison table shows for B − A."""
    rows = tab.locator("#eval-compare-table tbody tr")
    return {
        rows.nth(i).get_attribute("data-metric") or "": rows.nth(i)
        .locator("td.diff")
        .inner_text()[0]
        for i in range(rows.count())
    }


def test_evaluations_page_shows_the_runs_their_gates_and_a_comparison(
    page: tuple[Page, Watch], evals_server: Server
) -> None:
    tab, watch = page
    with httpx.Client(base_url=evals_server.base, headers=_bearer(evals_server.key)) as http:
        newest, oldest = (run["run"] for run in http.get("/evals").json()["runs"])
        params = {"base": oldest, "head": newest}
        compared = http.get("/evals/compare", params=params).json()
    open_console(tab, watch, evals_server, "evals")
    expect(tab.locator("#evals-table tbody tr")).to_have_count(2, timeout=TIMEOUT_MS)
    # two variants, each held to every gate; exact_match fails in the newest run
    expect(tab.locator(f"#evals-table tr[data-run='{newest}'] td.gates")).to_have_text(
        "2 of 6 failed"
    )
    expect(tab.locator(f"#evals-table tr[data-run='{oldest}'] td.gates")).to_have_text(
        "all 4 passed"
    )

    gate = tab.locator(f"#eval-gates tr[data-variant=baseline][data-gate='{FAILING}']")
    expect(gate).to_contain_text("FAILED", timeout=TIMEOUT_MS)
    expect(gate).to_contain_text(">= 0.99")
    expect(tab.locator("#eval-detail h3")).to_contain_text(newest)
    expect(tab.locator("#eval-metrics tr[data-metric='hit@2']")).to_be_visible()

    heading = tab.locator("#eval-compare h4")
    expect(heading).to_contain_text(f"{newest} (B) − {oldest} (A)", timeout=TIMEOUT_MS)
    rows = tab.locator("#eval-compare-table tbody tr")
    expect(rows).to_have_count(len(compared["metrics"]))
    deltas = tab.locator("#eval-compare svg g.delta")
    expect(deltas).to_have_count(len(compared["scored"]))
    significant = [m for m in compared["scored"] if compared["metrics"][m]["significant"]]
    expect(tab.locator("#eval-compare svg g.delta.significant")).to_have_count(len(significant))
    signs = _signs(tab)
    for metric, c in compared["metrics"].items():
        assert (signs[metric] == "-") == (c["diff"] < 0), (metric, c["diff"], signs[metric])
    screenshot(tab, "evals")

    tab.select_option("#compare-form select[name=base]", newest)
    tab.select_option("#compare-form select[name=head]", oldest)
    tab.click("#compare-form button[type=submit]")
    expect(heading).to_contain_text(f"{oldest} (B) − {newest} (A)", timeout=TIMEOUT_MS)
    swapped = _signs(tab)
    for metric, c in compared["metrics"].items():
        if c["diff"]:
            assert swapped[metric] != signs[metric], (metric, swapped[metric], signs[metric])

    with tab.expect_download() as saved:  # keys are on: fetched with the key and saved
        tab.click("#eval-report")
    report = Path(saved.value.path()).read_text()
    assert "Eval run: tiny" in report and "Worst samples" in report
    watch.assert_clean()


def test_drift_page_shows_the_checks_made_before_a_restart(
    page: tuple[Page, Watch], evals_server: Server
) -> None:
    tab, watch = page
    with httpx.Client(base_url=evals_server.base, headers=_bearer(evals_server.key)) as http:
        report = http.get("/drift").json()
    assert report["checks"] == 0 and report["kept"] == 2  # none by this process yet
    first, last = report["history"]
    assert not first["detected"], first  # the reference's own questions
    assert last["alert"] and "query_chars" in last["drifted"], last
    open_console(tab, watch, evals_server, "drift")
    expect(tab.locator("#drift-kept")).to_contain_text(
        "2 check(s) kept, 0 of them by this process", timeout=TIMEOUT_MS
    )
    expect(tab.locator("#drift-latest tr[data-signal=query_chars]")).to_contain_text("drifted")
    chart = tab.locator(".signal-chart[data-signal=query_chars] svg")
    expect(chart.locator("path.series")).to_be_attached()  # a line through both checks
    expect(tab.locator("#drift-alerts")).to_contain_text("query_chars")
    screenshot(tab, "evals-drift-history")
    watch.assert_clean()
