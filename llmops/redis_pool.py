"""The one way llmops opens an asyncio Redis client (routing state, rate limits, quotas): a
bounded pool that makes callers wait for a connection instead of failing at a burst, and socket
timeouts, so a Redis that stops answering (frozen, partitioned) fails a call, never hangs it."""

from __future__ import annotations

from typing import Any


def async_redis(
    url: str,
    max_connections: int,
    timeout_s: float | None,
    wait_s: float = 5.0,
    decode_responses: bool = False,
) -> Any:
    """A ``redis.asyncio.Redis`` on ``url``: at most ``max_connections``, each call waiting at
    most ``wait_s`` for a free one and ``timeout_s`` for connecting and for each reply."""
    import redis.asyncio as redis

    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_s,
        decode_responses=decode_responses,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return redis.Redis(connection_pool=pool)
