"""Per-key rate limits: a token bucket (``capacity`` requests at once, refilled at ``per_s``),
in process by default or in Redis for one budget across replicas, plus a per-process limit
on requests in flight.

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


class Limiter(Protocol):
    capacity: int

    async def take(self, key: str) -> Decision:
        """Take one request from ``key``'s bucket, or say how long to wait."""

    async def close(self) -> None: ...


class MemoryLimiter:
    """Buckets in this process (thread-safe): each replica has its own budget."""

    def __init__(
        self, capacity: int, per_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity, self.per_s, self.clock = capacity, per_s, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take_now(self, key: str) -> Decision:
        with self._lock:
            now = self.clock()
            tokens, ts = self._buckets.get(key, (float(self.capacity), now))
            tokens = min(self.capacity, tokens + max(0.0, now - ts) * self.per_s)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._buckets[key] = (tokens, now)
        return decide(allowed, tokens, self.capacity, self.per_s, now)

    async def take(self, key: str) -> Decision:
        return self.take_now(key)

    async def close(self) -> None:
        return None


class RedisLimiter:
    """Buckets in Redis, shared by every replica: one EVALSHA per request."""

    def __init__(
        self,
        url: str,
        capacity: int,
        per_s: float,
        prefix: str = "llmops:limits",
        max_connections: int = 64,
    ) -> None:
        import redis.asyncio as redis

        self.capacity, self.per_s, self.prefix = capacity, per_s, prefix
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=5
        )
        self.client: Any = redis.Redis(connection_pool=pool)
        self.script = self.client.register_script(TAKE_SCRIPT)
        # a bucket untouched for as long as it takes to refill is full: Redis may drop it
        self.ttl_ms = math.ceil(capacity / per_s * 1000) + 1000

    async def take(self, key: str) -> Decision:
        import redis

        try:
            allowed, tokens, at = await self.script(
                keys=[f"{self.prefix}:{key}"], args=[self.capacity, self.per_s, self.ttl_ms]
            )
        except redis.RedisError as exc:
            log.warning("rate limiter: Redis unreachable (%s); request admitted", exc)
            return Decision(True, self.capacity, self.capacity, 0.0, 0.0, time.time())
        return decide(bool(allowed), float(tokens), self.capacity, self.per_s, float(at))

    async def close(self) -> None:
        await self.client.aclose()


class InFlight:
    """Requests of each key in flight in this process, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        count = self._counts.get(key, 0)
        if count >= self.limit:
            return False
        self._counts[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)


def make_limiter(
    limiter: str, requests_per_minute: int, redis_url: str | None, prefix: str
) -> Limiter:
    """The bucket of ``requests_per_minute`` (burst as large), in memory or in Redis."""
    per_s = requests_per_minute / 60
    if limiter == "redis":
        assert redis_url is not None  # the config model requires it
        return RedisLimiter(redis_url, requests_per_minute, per_s, prefix)
    return MemoryLimiter(requests_per_minute, per_s)
