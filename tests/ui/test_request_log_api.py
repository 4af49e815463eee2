"""The read side of the request log the console shows: ``RAG.requests`` with its filters,
``RAG.request_timeline``, their HTTP routes and the console's static pages (open, with
nothing loaded from another host)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmops.monitoring.request_filter import RequestFilter, newest, timeline
from llmops.server.auth import scope_for
from llmops.server.ui import STATIC

ROWS = [
    {"time": 10.0, "variant": "a", "feedback": None, "latency_ms": 50.0, "abstained": False},
    {"time": 20.0, "variant": "b", "feedback": 1.0, "latency_ms": 500.0, "abstained": False},
    {"time": 30.0, "variant": "a", "feedback": 0.0, "latency_ms": 70.0, "abstained": True},
    {"time": 40.0, "variant": "a", "feedback": 1.0, "latency_ms": 90.0, "abstained": False},
]


def times(where: RequestFilter) -> list[float]:
    return [row["time"] for row in newest(ROWS, where)]


def test_filters_keep_the_newest_matching_rows_newest_first() -> None:
    assert times(RequestFilter()) == [40.0, 30.0, 20.0, 10.0]
    assert times(RequestFilter(limit=2)) == [40.0, 30.0]
    assert times(RequestFilter(variant="a")) == [40.0, 30.0, 10.0]
    assert times(RequestFilter(feedback="up")) == [40.0, 20.0]
    assert times(RequestFilter(feedback="down")) == [30.0]
    assert times(RequestFilter(feedback="unrated")) == [10.0]
    assert times(RequestFilter(feedback="rated", variant="a")) == [40.0, 30.0]
    assert times(RequestFilter(min_latency_ms=60, max_latency_ms=100)) == [40.0, 30.0]
    assert times(RequestFilter(abstained=True)) == [30.0]
    assert times(RequestFilter(abstained=False, limit=1)) == [40.0]
    with pytest.raises(ValueError, match="limit"):
        RequestFilter(limit=0)


def test_timeline_counts_requests_and_rewards_per_variant_and_bucket() -> None:
    result = timeline(ROWS, since=0.0, until=40.0, buckets=2)
    assert result["starts"] == [0.0, 20.0] and result["bucket_s"] == 20.0
    a, b = result["variants"]["a"], result["variants"]["b"]
    assert [x["requests"] for x in a] == [1, 2]  # the row at `until` falls in the last bucket
    assert a[1]["rated"] == 2 and a[1]["mean_reward"] == 0.5 and a[1]["abstained"] == 1
    assert a[0]["mean_reward"] is None and a[0]["mean_latency_ms"] == 50.0
    assert [x["requests"] for x in b] == [0, 1] and b[1]["mean_reward"] == 1.0
    with pytest.raises(ValueError, match="after"):
        timeline(ROWS, since=5.0, until=5.0)


def test_routes_read_the_log_through_the_facade(client: TestClient) -> None:
    questions = ("How do I install it?", "Price?")
    asked = [client.post("/query", json={"question": q}) for q in questions]
    ids = [r.json()["request_id"] for r in asked]
    rated = client.post("/feedback", json={"request_id": ids[0], "thumbs": "down"})
    assert rated.status_code == 200, rated.text
    every = client.get("/requests").json()
    assert [r["request_id"] for r in every["requests"]] == ids[::-1]
    assert every["requests"][0]["question"] == "Price?"
    down = client.get("/requests", params={"feedback": "down"}).json()["requests"]
    assert [r["request_id"] for r in down] == [ids[0]]
    later = client.get("/requests", params={"since": 4e9}).json()
    assert later["count"] == 0
    assert client.get("/requests", params={"limit": 0}).status_code == 422
    misspelt = client.get("/requests", params={"varaint": "a"})  # not every row: refused
    assert misspelt.status_code == 422 and "varaint" in misspelt.text
    twice = client.get("/requests?variant=a&variant=b")
    assert twice.status_code == 422 and twice.json()["detail"][0]["loc"] == ["query", "variant"]
    series = client.get("/requests/timeline", params={"buckets": 4}).json()
    assert sum(b["requests"] for b in series["variants"]["default"]) == 2
    assert sum(b["rated"] for b in series["variants"]["default"]) == 1
    bad = client.get("/requests/timeline", params={"since": 10, "until": 5})
    assert bad.status_code == 400 and "after" in bad.json()["detail"]


def test_console_pages_are_served_open_and_its_data_routes_need_admin(
    client: TestClient,
) -> None:
    page = client.get("/ui")
    assert page.status_code == 200 and "<title>llmops console</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/ui/static/console.js")
    assert script.status_code == 200 and "Authorization" in script.text
    assert client.get("/ui/static/../../app.py").status_code == 404
    assert scope_for("/ui") is None and scope_for("/ui/static/pages.js") is None
    assert scope_for("/requests") == "admin" and scope_for("/requests/timeline") == "admin"
    assert "/requests" in client.get("/openapi.json").json()["paths"]
    assert "/ui" not in client.get("/openapi.json").json()["paths"]


# the SVG namespace is a name, never fetched
NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.mark.parametrize("path", sorted(STATIC.iterdir()), ids=lambda p: Path(p).name)
def test_console_files_name_no_other_host(path: Path) -> None:
    text = path.read_text().replace(NAMESPACE, "")
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path.name
    assert "@import" not in text and "url(" not in text
