"""Canary and shadow experiments over HTTP.

Canary: a variant whose backend is down is rolled back on its own, with the reason, while its
users are answered by the stable variant; the rollback survives a restart; a healthy canary
ramps to all traffic, and changing its settings starts a new ramp.

Shadow: the serving variant answers; the shadow runs on a copy in the background (never
holding the response: with one slot, copies arriving while it runs are skipped), and both
answers and their agreement are recorded and reported.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter
from tests.stubs.openai_server import Behaviour, serve

QUESTION = {"question": "How do I restore a backup?"}
DEAD = {
    "type": "openai_compat",
    "base_url": "http://127.0.0.1:9/v1",
    "model": "tiny",
    "max_retries": 0,
    "timeout_s": 2,
}


def canary(**ramp: Any) -> dict[str, Any]:
    return {
        "name": "rollout",
        "strategy": "canary",
        "variants": {"stable": {}, "next": {"generator": DEAD}},
        "canary": {"variant": "next", "stages": [0.5, 1.0], "window": 10, **ramp},
    }


def shadow(candidate: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {
        "name": "shadowing",
        "strategy": "shadow",
        "variants": {"control": {}, "candidate": candidate},
        "shadow": {"variant": "candidate", **settings},
    }


@pytest.fixture
def open_app(write_config: ConfigWriter) -> Iterator[Any]:
    """Start (or restart) an app over HTTP from an experiment section; closed at the end."""
    clients: list[TestClient] = []

    def open_(section: dict[str, Any], ingest: bool = True, **app: Any) -> TestClient:
        rag = RAG.from_config(write_config(embedder=HASHING, experiment=section, **app))
        if ingest:
            rag.ingest()
        client = TestClient(create_app(rag)).__enter__()
        clients.append(client)
        return client

    yield open_
    for client in clients:
        client.__exit__(None, None, None)


def ask(client: TestClient, users: range, **body: Any) -> list[str]:
    variants = []
    for i in users:
        reply = client.post("/query", json={**QUESTION, **body}, headers={"x-user-id": f"u{i}"})
        assert reply.status_code == 200, reply.text
        variants.append(reply.json()["variant"])
    return variants


def metric(client: TestClient, name: str, **labels: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels}")


def test_a_failing_canary_rolls_back_with_the_reason_and_users_still_get_answers(
    open_app: Any,
) -> None:
    client = open_app(canary(max_error_rate=0.1))
    assert set(ask(client, range(40))) == {"stable"}  # canary users answered by stable
    report = client.get("/experiments").json()["variants"]
    ramp = report["next"]["canary"]
    assert ramp["rolled_back"] and ramp["share"] == 0.0
    assert ramp["reason"] == (
        "rolled back: error rate 2/2 requests exceeds 10.0% of the 10-request window"
    )
    assert report["next"]["requests"] == 2  # it got two requests, then no more
    assert metric(client, "llmops_canary_share", variant="next") == 0.0
    assert metric(client, "llmops_canary_moves_total", move="rolled_back_error_rate") == 1.0
    client.__exit__(None, None, None)

    restarted = open_app(canary(max_error_rate=0.1), ingest=False)
    assert restarted.get("/experiments").json()["variants"]["next"]["canary"] == ramp
    assert set(ask(restarted, range(40))) == {"stable"}


def test_a_canary_stream_that_fails_before_its_first_piece_is_served_by_stable(
    open_app: Any,
) -> None:
    client = open_app(canary(max_error_rate=1.0))  # never rolled back here
    for i in range(12):
        reply = client.post(
            "/query", json={**QUESTION, "stream": True}, headers={"x-user-id": f"u{i}"}
        )
        assert reply.status_code == 200 and '"variant": "stable"' in reply.text
    ramp = client.get("/experiments").json()["variants"]["next"]["canary"]
    assert ramp["window"]["errors"] == ramp["window"]["requests"] > 0


def test_a_healthy_canary_ramps_to_all_traffic_and_new_settings_restart_the_ramp(
    open_app: Any,
) -> None:
    section = canary()
    section["variants"]["next"] = {"retrieval": {"top_k": 2}}
    client = open_app(section)
    ask(client, range(60))
    ramp = client.get("/experiments").json()["variants"]["next"]["canary"]
    assert (ramp["stage"], ramp["share"], ramp["rolled_back"]) == (2, 1.0, False)
    assert ramp["reason"].startswith("advanced 50% -> 100%: 0 errors in 10 requests, p95 ")
    assert set(ask(client, range(100, 120))) == {"next"}
    assert metric(client, "llmops_canary_moves_total", move="advanced") == 1.0
    client.__exit__(None, None, None)

    section["variants"]["next"] = {"retrieval": {"top_k": 3}}  # a new build of the canary
    again = open_app(section, ingest=False)
    ramp = again.get("/experiments").json()["variants"]["next"]["canary"]
    assert (ramp["stage"], ramp["share"], ramp["reason"]) == (1, 0.5, "started")


def wait_for_shadows(client: TestClient) -> None:
    shadows = client.app.state.rag.experiment.shadows  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while shadows.in_flight:
        assert time.monotonic() < deadline, "shadow runs did not finish"
        time.sleep(0.02)


def test_the_shadow_runs_in_the_background_and_its_agreement_is_recorded(
    open_app: Any,
) -> None:
    client = open_app(shadow({"retrieval": {"top_k": 1}}))
    for _ in range(8):
        body = client.post("/query", json=QUESTION).json()
        assert body["variant"] == "control" and len(body["sources"]) == 4
        wait_for_shadows(client)
    summary = client.get("/experiments").json()["variants"]["candidate"]["shadow"]
    assert (summary["runs"], summary["errors"]) == (8, 0)
    assert summary["mean_source_overlap"] == 0.25  # its 1 passage is one of control's 4
    assert 0.0 < summary["mean_agreement"] <= 1.0
    runs = client.get("/experiments/shadow", params={"limit": 3}).json()["runs"]
    assert len(runs) == 3 and not runs[0]["same_passages"]
    assert {"serving_answer", "shadow_answer", "agreement", "serving_ms"} <= set(runs[0])
    assert metric(client, "llmops_shadow_runs_total", outcome="ok") == 8.0
    assert metric(client, "llmops_shadow_agreement_count", variant="candidate") == 8.0


def test_a_failing_shadow_is_recorded_and_never_reaches_the_user(open_app: Any) -> None:
    client = open_app(shadow({"generator": DEAD}))
    assert set(ask(client, range(5))) == {"control"}
    wait_for_shadows(client)
    runs = client.get("/experiments/shadow").json()["runs"]
    assert len(runs) == 5 and all(r["same_passages"] for r in runs)
    assert all(r["error"].startswith("BackendError") and r["agreement"] is None for r in runs)
    assert client.get("/experiments").json()["variants"]["candidate"]["shadow"]["errors"] == 5


def test_copies_arriving_while_the_shadow_is_busy_are_skipped(open_app: Any) -> None:
    behaviour = Behaviour(delay_s=2.0)  # a shadow backend slower than the requests
    with serve(behaviour) as url:
        slow = {"type": "openai_compat", "base_url": url, "model": "tiny"}
        client = open_app(shadow({"generator": slow}, max_in_flight=1))
        assert set(ask(client, range(4))) == {"control"}
        # had a response waited for its shadow, the slot would be free for every copy
        assert metric(client, "llmops_shadow_runs_total", outcome="skipped") == 3.0
        wait_for_shadows(client)
    runs = client.get("/experiments/shadow").json()["runs"]
    assert len(runs) == 1 and runs[0]["error"] is None


def test_an_app_starts_when_its_canary_server_is_down(open_app: Any) -> None:
    section = canary(max_error_rate=0.1)
    dead_vllm = {"type": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    section["variants"]["next"] = {"generator": {**dead_vllm, "max_retries": 0}}
    client = open_app(section)  # vllm checks /health at start: the canary's fails
    assert set(ask(client, range(40))) == {"stable"}
    assert client.get("/experiments").json()["variants"]["next"]["canary"]["rolled_back"]


def test_a_canary_answered_by_its_fallbacks_still_counts_as_failing(open_app: Any) -> None:
    section = canary(max_error_rate=0.1)
    section["variants"]["next"] = {"generator": DEAD, "fallbacks": [{"type": "extractive"}]}
    client = open_app(section)
    served = ask(client, range(40))
    assert served.count("next") == 2  # its fallback answered twice, then it was rolled back
    ramp = client.get("/experiments").json()["variants"]["next"]["canary"]
    assert ramp["rolled_back"] and ramp["reason"].startswith("rolled back: error rate 2/2")


def test_a_routing_store_failure_never_fails_a_canary_answer(open_app: Any) -> None:
    section = canary()
    section["variants"]["next"] = {"retrieval": {"top_k": 2}}  # healthy
    client = open_app(section)
    state = client.app.state.rag.experiment.router.state  # type: ignore[attr-defined]

    async def broken(*args: object) -> None:
        raise ConnectionError("routing store down")

    state.step_canary = broken
    assert set(ask(client, range(30))) == {"stable", "next"}


def test_closing_the_app_lets_a_shadow_on_the_apps_generator_finish(open_app: Any) -> None:
    with serve(Behaviour(delay_s=0.5)) as url:
        slow = {"type": "openai_compat", "base_url": url, "model": "tiny"}
        section = shadow({"retrieval": {"top_k": 1}})  # no generator: the app's
        client = open_app(section, generator=slow)
        assert client.post("/query", json=QUESTION).json()["variant"] == "control"
        client.__exit__(None, None, None)  # while the shadow waits for the backend
    again = open_app(section, ingest=False)
    (run,) = again.get("/experiments/shadow").json()["runs"]
    assert run["error"] is None and run["shadow_answer"]


def test_replicas_sharing_redis_judge_one_canary_window(
    write_config: ConfigWriter, redis_url: str
) -> None:
    """Two replicas, one Redis: each sees one canary failure, and together they roll it back
    (either replica alone would allow one error per window)."""
    section = {**canary(max_error_rate=0.1), "redis_url": redis_url}
    replicas = []
    for name in ("a", "b"):
        config = write_config(
            f"{name}.yaml", embedder=HASHING, data_dir=f"data-{name}", experiment=section
        )
        rag = RAG.from_config(config)
        rag.ingest()
        replicas.append(TestClient(create_app(rag)).__enter__())
    a, b = replicas

    def ramp(client: TestClient) -> dict[str, Any]:
        report: dict[str, Any] = client.get("/experiments").json()
        return dict(report["variants"]["next"]["canary"])

    users = iter(range(200))

    def one_user(client: TestClient) -> str:
        user = next(users)
        (variant,) = ask(client, range(user, user + 1))
        return variant

    try:
        while ramp(a)["window"]["errors"] == 0:
            assert one_user(a) == "stable"
        assert ramp(b)["window"]["errors"] == 1 and not ramp(b)["rolled_back"]  # shared window
        while not ramp(b)["rolled_back"]:
            assert one_user(b) == "stable"
        assert ramp(a)["reason"] == (
            "rolled back: error rate 2/2 requests exceeds 10.0% of the 10-request window"
        )
        assert set(ask(a, range(300, 320)) + ask(b, range(300, 320))) == {"stable"}
    finally:
        for client in replicas:
            client.__exit__(None, None, None)
