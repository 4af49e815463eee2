"""Two `llmops up` replicas behind one port (a round-robin proxy), with a Chroma server, Redis
and PostgreSQL on 127.0.0.1: every request through the proxy is answered, and both replicas
read the same experiment counts, canary ramp, feedback and request log, and spend one rate
budget per API key (limiter: redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from llmops.access.keys import KeyStore, server_secret
from llmops.config.auth import SECRET_ENV, RateLimits
from tests.conftest import HASHING, ConfigWriter
from tests.redis_server import running_redis
from tests.replica_stack import (
    CANARY,
    ingest,
    observe,
    replica_sections,
    replicated,
    wait_logged,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUESTS = 200
CONCURRENCY = 16
RPM = 3
"""The limited key's budget: this many requests, then one more each 20 s."""
QUESTIONS = ("How do I restore a backup?", "What does the team edition cost?", "Default colour?")


@pytest.fixture
def redis_url() -> Iterator[str]:
    with running_redis() as url:
        yield url


async def send(port: int, key: str) -> list[httpx.Response]:
    """``REQUESTS`` queries through the proxy over ``CONCURRENCY`` keep-alive connections, one
    user id each (the canary keeps each user on one side of its ramp)."""
    limits = httpx.Limits(max_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    base, headers = f"http://127.0.0.1:{port}", {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.post(
                    "/query",
                    json={"question": QUESTIONS[i % len(QUESTIONS)]},
                    headers={"x-user-id": f"user-{i}"},
                    timeout=120,
                )

        return await asyncio.gather(*(one(i) for i in range(REQUESTS)))


def test_two_replicas_behind_one_port_share_their_state(
    write_config: ConfigWriter,
    chroma_server: int,
    redis_url: str,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sections = replica_sections(chroma_server, redis_url, postgres_url, canary_window=5)
    auth = {"enabled": True, "limiter": "redis", "redis_url": redis_url}
    config = write_config(embedder=HASHING, server={"auth": auth}, **sections)
    monkeypatch.setenv(SECRET_ENV, "replicas-test-secret-0123456789")  # the same on each replica
    keys = KeyStore(tmp_path / "data", server_secret())  # in the data dir the replicas share
    admin = keys.create("load", ["admin"])[1]
    limited = keys.create("limited", ["query"], limits=RateLimits(requests_per_minute=RPM))[1]
    keys.close()
    ingest(config)
    since = time.time()
    with replicated(config, replicas=2) as stack:
        responses = asyncio.run(send(stack.port, admin))
        assert [r.status_code for r in responses] == [200] * REQUESTS, responses[0].text

        a, b = stack.bases
        as_admin = {"authorization": f"Bearer {admin}"}
        as_limited = {"authorization": f"Bearer {limited}"}
        with httpx.Client(timeout=60) as client:
            answer = client.post(f"{b}/query", json={"question": QUESTIONS[0]}, headers=as_admin)
            request_id = answer.raise_for_status().headers["x-request-id"]
            # feedback posted to replica A for replica B's answer at once, before B's writer
            # has put the row in the shared log: it waits for the row and lands on it
            feedback = {"request_id": request_id, "thumbs": "up"}
            rated = client.post(f"{a}/feedback", json=feedback, headers=as_admin)
            variant = rated.raise_for_status().json()["variant"]
            # one rate budget: the limited key's requests, alternating replicas, run out together
            budget = [
                client.post(f"{base}/query", json={"question": QUESTIONS[1]}, headers=as_limited)
                for base in (a, b) * RPM
            ]
            assert [r.status_code for r in budget] == [200] * RPM + [429] * RPM
            sent = REQUESTS + 1 + RPM
            # every answer reaches the shared log (each replica writes it about once a second)
            assert wait_logged(a, since, sent, admin) == sent
        assert variant in ("stable", CANARY)
        views = [observe(base, since, admin) for base in stack.bases]

    served = [view.answered for view in views]
    assert all(n > 0 for n in served) and sum(served) == sent, served
    first, second = views
    assert first.experiment["state"]["store"] == "redis"
    assert first.variants == second.variants
    assert first.logged == second.logged
    with psycopg.connect(postgres_url) as db:  # one log, in PostgreSQL
        assert db.execute("SELECT count(*) FROM requests").fetchone() == (sent,)
    assert sum(first.routed.values()) == sent
    assert {name: int(v["requests"]) for name, v in first.logged.items()} == first.routed
    assert first.variants[variant]["rewards"] == 1
    assert first.logged[variant]["rated"] == 1 and first.logged[variant]["reward_sum"] == 1.0
    canary = first.canary
    assert canary["stage"] > 1 and not canary["rolled_back"], canary
