"""The web console in headless chromium against a real `llmops up` with API keys on: the key
prompt, a streamed answer with its cited sources, feedback counted on the experiments page,
the request log and one request's trace as a waterfall. Every page must load without console
errors and without a request to any host but 127.0.0.1."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.ui.conftest import Server, Watch, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = "How do I restore a backup?"
TIMEOUT_MS = 30_000


def open_console(tab: Page, watch: Watch, server: Server, section: str = "playground") -> None:
    """Load /ui#SECTION; the app checks keys, so the page asks for one: enter it."""
    with tab.expect_response(lambda r: r.url.endswith("/stats") and r.status == 401):
        tab.goto(f"{server.base}/ui#{section}")
    expect(tab.locator("#key-panel")).to_be_visible(timeout=TIMEOUT_MS)
    watch.expect_refusals()  # the page's first calls, without a key, were refused
    tab.fill("#key-input", server.key)
    tab.click("#key-form button[type=submit]")
    expect(tab.locator("#key-panel")).to_be_hidden()


def ask(tab: Page, question: str, user: str) -> str:
    """Ask in the playground; returns the request id the answer shows."""
    tab.fill("#question", question)
    tab.fill("#user-id", user)
    with tab.expect_response(lambda r: r.url.endswith("/query")) as reply:
        tab.click("#ask")
    response = reply.value
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: token" in response.text()  # the answer came as it was generated
    request_id = tab.locator("#answer-request-id")
    expect(request_id).to_have_text(re.compile(r"\w{8,}"), timeout=TIMEOUT_MS)
    return request_id.inner_text()


def test_the_page_asks_for_a_key_and_refuses_a_wrong_one(
    page: tuple[Page, Watch], server: Server
) -> None:
    tab, watch = page
    tab.goto(f"{server.base}/ui")
    expect(tab.locator("#key-panel")).to_be_visible(timeout=TIMEOUT_MS)
    screenshot(tab, "key")
    tab.fill("#key-input", "llmk_nope_wrong")
    with tab.expect_response(lambda r: r.url.endswith("/stats") and r.status == 401):
        tab.click("#key-form button[type=submit]")
    expect(tab.locator("#key-error")).to_contain_text("refused", timeout=TIMEOUT_MS)
    watch.expect_refusals()
    watch.assert_clean()


def test_playground_streams_an_answer_with_its_cited_sources_and_takes_feedback(
    page: tuple[Page, Watch], server: Server
) -> None:
    tab, watch = page
    open_console(tab, watch, server)
    request_id = ask(tab, QUESTION, "alice")
    answer = tab.locator("#answer")
    expect(answer).to_contain_text("restore")
    cited = tab.locator("#sources li.source.cited")
    expect(cited.first).to_contain_text("backup.md")
    expect(tab.locator("#answer button.cite").first).to_be_visible()
    variant = tab.locator("#answer-meta .variant").inner_text().removeprefix("variant: ")
    assert variant in {"control", "wide"}
    tab.fill("#comment", "exactly what I needed")
    tab.click("#thumbs-up")
    expect(tab.locator("#feedback-status")).to_contain_text(f"credited to variant {variant}")
    screenshot(tab, "playground")

    tab.goto(f"{server.base}/ui#experiments")
    row = tab.locator(f"#variants-table tr[data-variant={variant}]")
    expect(row.locator("td.rewards")).not_to_have_text("0", timeout=TIMEOUT_MS)
    rewarded = int(row.locator("td.rewards").inner_text())
    assert rewarded >= 1
    expect(tab.locator("#over-time svg path.series").first).to_be_attached()
    screenshot(tab, "experiments")

    tab.goto(f"{server.base}/ui#requests")
    tab.select_option("select[name=feedback]", "up")
    tab.click("#request-filters button[type=submit]")
    rated = tab.locator(f"#requests-table tr[data-request-id='{request_id}']")
    expect(rated).to_contain_text(QUESTION, timeout=TIMEOUT_MS)
    watch.assert_clean()


def test_requests_page_filters_the_log_and_shows_a_trace_waterfall(
    page: tuple[Page, Watch], server: Server
) -> None:
    tab, watch = page
    open_console(tab, watch, server)
    request_id = ask(tab, "What does the team edition cost?", "bob")
    tab.click("nav a[data-page=requests]")
    row = tab.locator(f"#requests-table tr[data-request-id='{request_id}']")
    expect(row).to_contain_text("team edition", timeout=TIMEOUT_MS)
    expect(tab.locator("#latency-plot svg circle.point").first).to_be_attached()

    tab.select_option("select[name=abstained]", "true")
    tab.click("#request-filters button[type=submit]")
    expect(row).to_have_count(0, timeout=TIMEOUT_MS)  # it was answered, not abstained
    tab.select_option("select[name=abstained]", "")
    tab.click("#request-filters button[type=submit]")
    row.click()
    detail = tab.locator("#request-detail")
    expect(detail).to_contain_text("20 euros")
    expect(detail.locator("svg rect").first).to_be_attached()  # the retrieval scores
    spans = tab.locator("#trace svg rect.span")
    expect(spans.first).to_be_attached(timeout=TIMEOUT_MS)
    assert spans.count() >= 2
    screenshot(tab, "requests")
    watch.assert_clean()


def test_experiments_page_shows_every_variant_and_the_posteriors(
    page: tuple[Page, Watch], server: Server
) -> None:
    tab, watch = page
    open_console(tab, watch, server, "experiments")
    expect(tab.locator("#variants-table tr[data-variant=control]")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    expect(tab.locator("#variants-table tr[data-variant=wide]")).to_be_visible()
    expect(tab.locator("#page-experiments svg").first).to_be_attached()
    watch.assert_clean()


def test_drift_page_plots_each_signal_against_its_level_and_lists_the_alert(
    page: tuple[Page, Watch], server: Server
) -> None:
    tab, watch = page
    auth = {"Authorization": f"Bearer {server.key}"}
    long = "Could you explain in detail, step by step, everything about {} in Widgetron?"
    with httpx.Client(base_url=server.base, headers=auth, timeout=30) as http:
        checks = http.get("/drift").json()["checks"]
        for topic in ("backups", "pricing", "installing", "colours") * 5:
            assert http.post("/query", json={"question": long.format(topic)}).status_code == 200
        deadline = time.monotonic() + 60
        while http.get("/drift").json()["checks"] == checks:  # the check runs in the background
            assert time.monotonic() < deadline, "no drift check after 20 queries"
            time.sleep(0.2)
    open_console(tab, watch, server, "drift")
    latest = tab.locator("#drift-latest tr[data-signal=query_chars]")
    expect(latest).to_contain_text("drifted", timeout=TIMEOUT_MS)
    expect(tab.locator(".signal-chart[data-signal=query_chars] svg line.rule")).to_be_attached()
    expect(tab.locator("#drift-alerts")).to_contain_text("query_chars")
    screenshot(tab, "drift")
    watch.assert_clean()
