"""Routing through a Redis outage: ``ResilientState`` wraps the shared (Redis) state so that a
store that is down never fails or stalls a request, and nothing it can keep is lost.

While the store is unreachable (a refused connection, or no reply within the socket timeout):

- requests are still routed: ``weighted`` and ``canary`` from the hash and the last known
  ramp, ``thompson`` from the last stats read from the store plus what this process counted
  since;
- pulls, rewards of requests assigned during the outage, their assignments and shadow runs
  are kept in this process (at most ``max_pending`` writes; beyond that they are dropped and
  counted) and written to the store as soon as it answers again, before anything else;
- what only the store knows cannot be done: feedback for a request assigned before the
  outage is refused with ``StateUnavailable`` (HTTP 503: send it again later), and a canary
  outcome is dropped and counted (the ramp must not move on one replica's view), and a
  ramp's history is the one last read from the store.

The store is tried again at most every ``retry_s`` seconds (requests in between do not pay
the timeout); the first call that reaches it replays the pending writes. ``health()`` says
whether the store is reachable and counts the pending, replayed and dropped writes (in
``GET /experiments``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from llmops.errors import NotReady
from llmops.routing.bandit import ArmStats
from llmops.routing.canary import CanaryMove, CanaryState
from llmops.routing.redis_state import RedisRoutingState
from llmops.routing.state import CanaryStep, RoutingState

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PENDING = 100_000
"""Writes kept in process while the store is down (a few MB); the rest are dropped, counted."""


class StateUnavailable(NotReady):
    """The experiment's shared state store is unreachable and the call needs what it holds."""


@dataclass
class _Pending:
    """What this process counted while the store was down, not yet written to it."""

    arms: dict[tuple[str, str], ArmStats] = field(default_factory=dict)
    assignments: dict[tuple[str, str], str] = field(default_factory=dict)
    shadow: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def writes(self) -> int:
        arms = sum(d.pulls + d.rewards for d in self.arms.values())
        return arms + len(self.assignments) + sum(len(r) for r in self.shadow.values())

    def add(self, experiment: str, arm: str, delta: ArmStats) -> None:
        self.arms[(experiment, arm)] = _sum(self.arms.get((experiment, arm)), delta)


def _sum(a: ArmStats | None, b: ArmStats) -> ArmStats:
    a = a or ArmStats()
    return ArmStats(
        a.pulls + b.pulls,
        a.rewards + b.rewards,
        a.reward_sum + b.reward_sum,
        a.reward_sq_sum + b.reward_sq_sum,
    )


class ResilientState:
    """A ``RoutingState`` over ``store`` that keeps routing while the store is down (see the
    module docstring); ``errors`` are the store's "unreachable" exceptions."""

    def __init__(
        self,
        store: RoutingState,
        errors: tuple[type[BaseException], ...],
        *,
        retry_s: float = 1.0,
        max_pending: int = MAX_PENDING,
        name: str = "redis",
    ) -> None:
        self.store, self.errors, self.name = store, errors, name
        self.retry_s, self.max_pending = retry_s, max_pending
        self.pending = _Pending()
        self.known_stats: dict[str, dict[str, ArmStats]] = {}
        self.known_canaries: dict[str, CanaryState] = {}
        self.known_histories: dict[str, list[CanaryMove]] = {}
        self.down_since: float | None = None
        self.next_try = 0.0
        self.error = ""
        self.counts = {"outages": 0, "replayed": 0, "dropped": 0, "refused": 0}
        self._replaying = asyncio.Lock()

    # the store, or why not ---------------------------------------------------------------
    async def _call(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """``call()`` on the store; None when it is (or just went) down."""
        if self.down_since is not None and time.monotonic() < self.next_try:
            return None
        try:
            if self.pending.writes:
                await self._replay()
            result = await call()
        except self.errors as exc:
            self._went_down(exc)
            return None
        if self.down_since is not None:
            log.warning(
                "routing state: %s is back after %.1fs; %d writes counted during the outage "
                "replayed so far",
                self.name,
                time.monotonic() - self.down_since,
                self.counts["replayed"],
            )
            self.down_since, self.error = None, ""
        return result

    def _went_down(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        self.next_try = time.monotonic() + self.retry_s
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.counts["outages"] += 1
            log.warning(
                "routing state: %s unreachable (%s); routing from this process's state until "
                "it is back (retried every %.1fs)",
                self.name,
                self.error,
                self.retry_s,
            )

    async def _replay(self) -> None:
        """Write what was counted during the outage. Each item leaves ``pending`` before it
        is written and goes back if the write fails, so concurrent updates are not lost."""
        async with self._replaying:
            pending = self.pending
            for key in list(pending.assignments):
                arm = pending.assignments.pop(key)
                try:
                    await self.store.assign(*key, arm)
                except BaseException:
                    pending.assignments.setdefault(key, arm)
                    raise
                pending.add(key[0], arm, ArmStats(pulls=-1))  # assign counted its pull
                self.counts["replayed"] += 1
            for key in list(pending.arms):
                delta = pending.arms.pop(key)
                try:
                    await self._write_delta(*key, delta)
                except BaseException:
                    pending.add(*key, delta)
                    raise
                self.counts["replayed"] += delta.pulls + delta.rewards
            for experiment in list(pending.shadow):
                runs = pending.shadow.pop(experiment)
                try:
                    await self.store.record_shadow(experiment, runs)
                except BaseException:
                    pending.shadow[experiment] = runs + pending.shadow.get(experiment, [])
                    raise
                self.counts["replayed"] += len(runs)

    async def _write_delta(self, experiment: str, arm: str, delta: ArmStats) -> None:
        if delta.pulls <= 0 and delta.rewards <= 0:
            return
        add_stats = getattr(self.store, "add_stats", None)
        if add_stats is not None:  # one transaction for the whole delta
            await add_stats(experiment, arm, delta)
            return
        for _ in range(delta.pulls):
            await self.store.add_pull(experiment, arm)
        for _ in range(delta.rewards):  # a store without add_stats gets the mean, n times
            await self.store.add_reward(experiment, arm, delta.reward_sum / delta.rewards)

    def _keep(self, writes: int) -> bool:
        """Room for ``writes`` more pending writes? Otherwise they are dropped, counted."""
        if self.pending.writes + writes > self.max_pending:
            self.counts["dropped"] += writes
            return False
        return True

    def _unavailable(self, what: str) -> StateUnavailable:
        self.counts["refused"] += 1
        return StateUnavailable(
            f"{what}: the experiment's state store ({self.name}) is unreachable ({self.error}); "
            "send it again when the store is back"
        )

    # RoutingState ------------------------------------------------------------------------
    async def assign(self, experiment: str, request_id: str, arm: str) -> None:
        done = await self._call(lambda: _done(self.store.assign(experiment, request_id, arm)))
        if done is None and self._keep(1):
            self.pending.assignments[(experiment, request_id)] = arm
            self.pending.add(experiment, arm, ArmStats(pulls=1))

    async def reward(self, experiment: str, request_id: str, reward: float) -> str | None:
        arm = self.pending.assignments.pop((experiment, request_id), None)
        if arm is not None:  # assigned during the outage: counted here, replayed later
            self.pending.add(experiment, arm, ArmStats().observed(reward))
            return arm
        found: list[str | None] = []

        async def call() -> bool:
            found.append(await self.store.reward(experiment, request_id, reward))
            return True

        if await self._call(call) is None:
            raise self._unavailable(f"feedback for request '{request_id}' was not recorded")
        return found[0]

    async def add_pull(self, experiment: str, arm: str) -> None:
        done = await self._call(lambda: _done(self.store.add_pull(experiment, arm)))
        if done is None and self._keep(1):
            self.pending.add(experiment, arm, ArmStats(pulls=1))

    async def add_reward(self, experiment: str, arm: str, reward: float) -> None:
        done = await self._call(lambda: _done(self.store.add_reward(experiment, arm, reward)))
        if done is None and self._keep(1):
            self.pending.add(experiment, arm, ArmStats().observed(reward))

    async def stats(self, experiment: str) -> dict[str, ArmStats]:
        found = await self._call(lambda: self.store.stats(experiment))
        if found is not None:
            self.known_stats[experiment] = found
            return found
        merged = dict(self.known_stats.get(experiment, {}))
        for (name, arm), delta in self.pending.arms.items():
            if name == experiment:
                merged[arm] = _sum(merged.get(arm), delta)
        return merged

    async def canary(self, key: str) -> CanaryState:
        found = await self._call(lambda: self.store.canary(key))
        if found is not None:
            self.known_canaries[key] = found
            return found
        return self.known_canaries.get(key, CanaryState())

    async def step_canary(self, key: str, step: CanaryStep) -> tuple[CanaryState, CanaryState]:
        moved = await self._call(lambda: self.store.step_canary(key, step))
        if moved is None:
            self.counts["dropped"] += 1
            raise StateUnavailable(
                f"a canary outcome was dropped: the state store ({self.name}) is unreachable "
                f"({self.error})"
            )
        self.known_canaries[key] = moved[1]
        return moved

    async def canary_history(self, key: str, limit: int) -> list[CanaryMove]:
        found = await self._call(lambda: self.store.canary_history(key, limit))
        if found is not None:
            self.known_histories[key] = found
            return found
        return self.known_histories.get(key, [])[:limit]

    async def record_shadow(self, experiment: str, runs: Sequence[dict[str, Any]]) -> None:
        done = await self._call(lambda: _done(self.store.record_shadow(experiment, runs)))
        if done is None and self._keep(len(runs)):
            self.pending.shadow.setdefault(experiment, []).extend(runs)

    async def shadow_runs(self, experiment: str, limit: int) -> list[dict[str, Any]]:
        found = await self._call(lambda: self.store.shadow_runs(experiment, limit))
        if found is not None:
            return found
        return list(reversed(self.pending.shadow.get(experiment, [])))[:limit]

    async def close(self) -> None:
        if self.pending.writes:
            await self._call(_nothing)  # one last try to write what is pending
        if self.pending.writes:
            log.warning(
                "routing state: %s still unreachable at shutdown; %d pending writes lost",
                self.name,
                self.pending.writes,
            )
        await self.store.close()

    def health(self) -> dict[str, Any]:
        """For ``GET /experiments``: is the store reachable, and what happened to writes."""
        return {
            "store": self.name,
            "available": self.down_since is None,
            "error": self.error or None,
            "pending_writes": self.pending.writes,
            "replayed_writes": self.counts["replayed"],
            "dropped_writes": self.counts["dropped"],
            "refused_calls": self.counts["refused"],
            "outages": self.counts["outages"],
        }


async def _done(call: Awaitable[None]) -> bool:
    await call
    return True


async def _nothing() -> bool:
    return True


def redis_state(url: str, *, timeout_s: float = 2.0, retry_s: float = 1.0) -> ResilientState:
    """The shared Redis state, kept routing through an outage (see the module docstring)."""
    import redis

    store = RedisRoutingState(url, socket_timeout_s=timeout_s)
    return ResilientState(store, (redis.RedisError, OSError), retry_s=retry_s)
