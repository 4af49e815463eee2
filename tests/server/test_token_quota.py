"""``tokens_per_day`` per API key: each answer's prompt + completion tokens (``/query`` and
``/v1``, streamed or not) are charged to its key after the response; once a key is over, it
gets 429 with ``Retry-After`` until the UTC day ends, and other keys are untouched. In process
and in Redis (INCRBY on a day-keyed counter with a TTL)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from llmops.access.quota import DAY_S, MemoryDailyTokens, RedisDailyTokens, until_day_end
from llmops.pipelines import query as query_pipeline
from llmops.types import Usage
from tests.conftest import HASHING, ConfigWriter
from tests.server.test_auth import QUESTION, bearer, secret, serve
from tests.server.test_rate_limits import REDIS_URL, redis_available

__all__ = ["secret"]  # the autouse fixture that sets the server secret

PER_ANSWER = Usage(prompt_tokens=30, completion_tokens=20)  # 50 tokens an answer
LIMIT = 120  # two answers leave 20 tokens: the third is served and charged, the fourth refused
CHAT = {"model": "testapp", "messages": [{"role": "user", "content": QUESTION["question"]}]}
needs_redis = pytest.mark.skipif(not redis_available(), reason="no Redis at 127.0.0.1:6379")


@pytest.fixture(autouse=True)
def counted_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer reports PER_ANSWER (the extractive generator uses no LLM tokens)."""
    build = query_pipeline._answer

    def with_usage(*args: Any) -> Any:
        return dataclasses.replace(build(*args), usage=PER_ANSWER)

    monkeypatch.setattr(query_pipeline, "_answer", with_usage)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    import redis

    prefix = f"test-quota-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for name in client.scan_iter(f"{prefix}:*"):
        client.delete(name)
    client.close()


@pytest.mark.parametrize("limiter", ["memory", pytest.param("redis", marks=needs_redis)])
def test_a_key_over_its_daily_tokens_is_429_until_the_day_ends(
    write_config: ConfigWriter, limiter: str, redis_prefix: str
) -> None:
    auth: dict[str, Any] = {"enabled": True, "limits": {"tokens_per_day": LIMIT}}
    if limiter == "redis":
        auth |= {"limiter": "redis", "redis_url": REDIS_URL, "redis_prefix": redis_prefix}
    for client, keys in serve(write_config(embedder=HASHING, server={"auth": auth})):
        info, key = keys.create("metered", ["query"])
        _, other = keys.create("other", ["query"])
        served = [
            client.post("/query", json=QUESTION, headers=bearer(key)),
            client.post("/v1/chat/completions", json=CHAT, headers=bearer(key)),
            client.post("/query", json={**QUESTION, "stream": True}, headers=bearer(key)),
        ]
        assert [r.status_code for r in served] == [200, 200, 200]
        refused = client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert f"{LIMIT} tokens" in refused.json()["error"]["message"]
        retry = int(refused.headers["Retry-After"])
        assert 0 < retry <= DAY_S and abs(retry - until_day_end(time.time())) <= 2
        assert client.post("/query", json=QUESTION, headers=bearer(key)).status_code == 429
        assert client.post("/query", json=QUESTION, headers=bearer(other)).status_code == 200
        if limiter == "redis":
            assert_redis_counter(redis_prefix, info.id, 3 * PER_ANSWER.total_tokens)


def assert_redis_counter(prefix: str, key_id: str, tokens: int) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    (name,) = client.scan_iter(f"{prefix}:tokens:*:{key_id}")
    assert int(client.get(name) or 0) == tokens
    assert until_day_end(time.time()) < client.ttl(name) <= until_day_end(time.time()) + 3601
    client.close()


def test_the_memory_count_starts_again_each_utc_day() -> None:
    now = [10 * DAY_S - 5.0]
    tokens = MemoryDailyTokens(clock=lambda: now[0])

    async def run() -> list[int]:
        await tokens.charge("k", 70)
        await tokens.charge("k", 40)
        before = await tokens.used("k")
        now[0] += 10  # past midnight UTC
        after = await tokens.used("k")
        await tokens.charge("k", 5)
        return [before, after, await tokens.used("k"), await tokens.used("other")]

    assert asyncio.run(run()) == [110, 0, 5, 0]
    assert until_day_end(10 * DAY_S - 5.0) == 5.0


def test_redis_down_admits_and_charges_nothing() -> None:
    tokens = RedisDailyTokens("redis://127.0.0.1:1/0")

    async def run() -> int:
        await tokens.charge("k", 50)
        used = await tokens.used("k")
        await tokens.close()
        return used

    assert asyncio.run(run()) == 0
