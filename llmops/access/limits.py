"""Per-key rate limits: a token bucket (``capacity`` requests at once, refilled at ``per_s``),
in process by default or in Redis for one budget across replicas, plus a limit on requests
in flight (in process, or in Redis across replicas). The sizes come with each
call, so each key can have its own.

The Redis bucket is one Lua script run with EVALSHA: refill, take and TTL happen atomically
on the Redis clock, so replicas and threads cannot both take the last token (the
double-admission bugs of litellm#4125 and #39713). When Redis cannot be reached the request
is admitted and a warning logged: the limiter protects capacity, it is not the auth check.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from llmops.redis_pool import async_redis

log = logging.getLogger("llmops.access")

# KEYS[1] the bucket; ARGV capacity, refill per second, TTL in ms. Returns
# {allowed, tokens left, Redis time}: floats as strings (Lua numbers become integers).
TAKE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, ts = capacity, now end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then tokens, allowed = tokens - 1, 1 end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {allowed, string.format('%.17g', tokens), string.format('%.17g', now)}
"""


REDIS_TIMEOUT_S = 1.0
"""Per Redis call: a Redis that hangs (frozen, partitioned) costs a request at most this, then
the request is admitted as when Redis refuses connections."""


def redis_client(url: str, max_connections: int = 64) -> Any:
    """An asyncio Redis client for the limits (``REDIS_TIMEOUT_S`` per call)."""
    return async_redis(url, max_connections, REDIS_TIMEOUT_S)


@dataclass(frozen=True)
class Decision:
    """One request's verdict, with what the RateLimit headers tell the client."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: float
    """Until the next token (0 when allowed)."""
    reset_s: float
    """Until the bucket is full again."""
    at: float
    """The limiter's clock at the decision (monotonic in process, Redis TIME across replicas)."""


def decide(allowed: bool, tokens: float, capacity: int, per_s: float, at: float) -> Decision:
    wait = 0.0 if allowed else (1 - tokens) / per_s
    reset = (capacity - tokens) / per_s
    return Decision(allowed, capacity, int(tokens), wait, reset, at)


def per_minute(requests_per_minute: int) -> tuple[int, float]:
    """The bucket of ``requests_per_minute``: as many at once, refilled over a minute."""
    return requests_per_minute, requests_per_minute / 60


class Limiter(Protocol):
    async def take(self, key: str, capacity: int, per_s: float) -> Decision:
        """Take one request from ``key``'s bucket (``capacity`` at once, refilled at
        ``per_s``), or say how long to wait."""

    async def close(self) -> None: ...


class MemoryLimiter:
    """Buckets in this process (thread-safe): each replica has its own budget."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take_now(self, key: str, capacity: int, per_s: float) -> Decision:
        with self._lock:
            now = self.clock()
            tokens, ts = self._buckets.get(key, (float(capacity), now))
            tokens = min(capacity, tokens + max(0.0, now - ts) * per_s)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._buckets[key] = (tokens, now)
        return decide(allowed, tokens, capacity, per_s, now)

    async def take(self, key: str, capacity: int, per_s: float) -> Decision:
        return self.take_now(key, capacity, per_s)

    async def close(self) -> None:
        return None


class RedisLimiter:
    """Buckets in Redis, shared by every replica: one EVALSHA per request."""

    def __init__(self, url: str, prefix: str = "llmops:limits", max_connections: int = 64) -> None:

        self.prefix = prefix
        self.client = redis_client(url, max_connections)
        self.script = self.client.register_script(TAKE_SCRIPT)

    async def take(self, key: str, capacity: int, per_s: float) -> Decision:
        import redis

        # a bucket untouched for as long as it takes to refill is full: Redis may drop it
        ttl_ms = math.ceil(capacity / per_s * 1000) + 1000
        try:
            allowed, tokens, at = await self.script(
                keys=[f"{self.prefix}:{key}"], args=[capacity, per_s, ttl_ms]
            )
        except redis.RedisError as exc:
            log.warning("rate limiter: Redis unreachable (%s); request admitted", exc)
            return Decision(True, capacity, capacity, 0.0, 0.0, time.time())
        return decide(bool(allowed), float(tokens), capacity, per_s, float(at))

    async def close(self) -> None:
        await self.client.aclose()


class InFlight(Protocol):
    async def acquire(self, key: str, limit: int, request: str) -> bool:
        """Count ``request`` in flight for ``key`` unless ``limit`` are in flight already."""

    async def release(self, key: str, request: str) -> None: ...

    async def close(self) -> None: ...


class MemoryInFlight:
    """Requests of each key in flight in this process."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    async def acquire(self, key: str, limit: int, request: str) -> bool:
        count = self._counts.get(key, 0)
        if count >= limit:
            return False
        self._counts[key] = count + 1
        return True

    async def release(self, key: str, request: str) -> None:
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)

    async def close(self) -> None:
        return None


# KEYS[1] the key's set of requests in flight (request id -> start, Redis clock); ARGV limit,
# request id, lease in seconds. Entries older than the lease are dropped first: a replica that
# died mid-request frees its slots after the lease. Returns 1 when admitted.
ACQUIRE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - lease)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(lease))
return 1
"""


class RedisInFlight:
    """Requests of each key in flight across every replica: a sorted set per key in Redis,
    one script per request to admit and one ZREM to release. ``lease_s`` bounds how long a
    slot of a replica that died mid-request stays taken. Redis unreachable: admitted, with a
    warning, as for the rate limiter."""

    def __init__(self, url: str, prefix: str = "llmops:limits", lease_s: float = 600.0) -> None:

        self.prefix, self.lease_s = prefix, lease_s
        self.client = redis_client(url)
        self.script = self.client.register_script(ACQUIRE_SCRIPT)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:inflight:{key}"

    async def acquire(self, key: str, limit: int, request: str) -> bool:
        import redis

        try:
            admitted = await self.script(keys=[self._key(key)], args=[limit, request, self.lease_s])
        except redis.RedisError as exc:
            log.warning("concurrency limit: Redis unreachable (%s); request admitted", exc)
            return True
        return bool(admitted)

    async def release(self, key: str, request: str) -> None:
        import redis

        try:
            await self.client.zrem(self._key(key), request)
        except redis.RedisError as exc:
            log.warning("concurrency limit: Redis unreachable (%s); slot freed by lease", exc)

    async def close(self) -> None:
        await self.client.aclose()
