"""Per-key LLM tokens per day (UTC): each answer's prompt + completion tokens are charged to
its key after the response; a key already at its limit is refused until the day ends.

In process by default; in Redis (INCRBY on a day-keyed counter that expires after the day)
for one budget across replicas. An answer is never cut short: the request that crosses the
limit is served and charged, the next one is refused. When Redis cannot be reached, requests
are admitted and a warning logged, as for the rate limiter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from llmops.access.limits import redis_client

log = logging.getLogger("llmops.access")

DAY_S = 86_400


def day_of(now: float) -> int:
    """The UTC day number of the epoch time ``now``."""
    return int(now // DAY_S)


def until_day_end(now: float) -> float:
    """Seconds from ``now`` to the next UTC midnight."""
    return (day_of(now) + 1) * DAY_S - now


class DailyTokens(Protocol):
    clock: Callable[[], float]

    async def used(self, key: str) -> int:
        """Tokens ``key`` has been charged today."""

    async def charge(self, key: str, tokens: int) -> None:
        """Add ``tokens`` to ``key``'s count of today."""

    async def close(self) -> None: ...


class MemoryDailyTokens:
    """Counts in this process (thread-safe): each replica has its own budget."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (day, tokens)
        self._lock = threading.Lock()

    async def used(self, key: str) -> int:
        day, tokens = self._counts.get(key, (-1, 0))
        return tokens if day == day_of(self.clock()) else 0

    async def charge(self, key: str, tokens: int) -> None:
        today = day_of(self.clock())
        with self._lock:
            day, count = self._counts.get(key, (today, 0))
            self._counts[key] = (today, (count if day == today else 0) + tokens)

    async def close(self) -> None:
        return None


class RedisDailyTokens:
    """One counter per key and day in Redis, shared by every replica."""

    def __init__(
        self, url: str, prefix: str = "llmops:limits", clock: Callable[[], float] = time.time
    ) -> None:
        self.prefix, self.clock = prefix, clock
        self.client = redis_client(url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:tokens:{day_of(self.clock())}:{key}"

    async def used(self, key: str) -> int:
        import redis

        try:
            value = await self.client.get(self._key(key))
        except redis.RedisError as exc:
            log.warning("token quota: Redis unreachable (%s); request admitted", exc)
            return 0
        return int(value or 0)

    async def charge(self, key: str, tokens: int) -> None:
        import redis

        name = self._key(key)
        # the counter outlives its day by an hour, for replicas whose clocks lag a little
        ttl = int(until_day_end(self.clock())) + 3600
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                await pipe.incrby(name, tokens).expire(name, ttl).execute()
        except redis.RedisError as exc:
            log.warning("token quota: Redis unreachable (%s); %d tokens not charged", exc, tokens)

    async def close(self) -> None:
        await self.client.aclose()
