"""Where experiments keep their per-arm traffic and rewards, canary ramps and shadow runs:
SQLite in the app's data dir by default (survives restarts, shared by the worker processes of
one machine), Redis for several replicas sharing one experiment. Every update is atomic in the
store itself (increments; a canary step is a read-modify-write in one transaction), so
concurrent requests from any number of threads or processes lose nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from llmops.db import open_database, transaction
from llmops.redis_pool import async_redis
from llmops.routing.bandit import ArmStats
from llmops.routing.canary import CanaryState

SCHEMA = """
CREATE TABLE IF NOT EXISTS arms (
    experiment TEXT NOT NULL,
    arm TEXT NOT NULL,
    pulls INTEGER NOT NULL DEFAULT 0,
    rewards INTEGER NOT NULL DEFAULT 0,
    reward_sum REAL NOT NULL DEFAULT 0,
    reward_sq_sum REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment, arm)
);
CREATE TABLE IF NOT EXISTS assignments (
    experiment TEXT NOT NULL,
    request_id TEXT NOT NULL,
    arm TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (experiment, request_id)
);
CREATE INDEX IF NOT EXISTS assignments_by_time ON assignments (time);
CREATE TABLE IF NOT EXISTS canaries (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shadow_runs (
    experiment TEXT NOT NULL,
    time REAL NOT NULL,
    run TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS shadow_runs_by_time ON shadow_runs (experiment, time);
"""
KEEP_ASSIGNMENTS_S = 7 * 86400
"""How long a request can still get feedback (and a shadow run is kept)."""
KEEP_SHADOW_RUNS = 10_000
"""Shadow runs kept per experiment (the newest)."""
CanaryStep = Callable[[CanaryState], CanaryState]
_ADD = """
INSERT INTO arms (experiment, arm, pulls, rewards, reward_sum, reward_sq_sum)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (experiment, arm) DO UPDATE SET
    pulls = pulls + excluded.pulls,
    rewards = rewards + excluded.rewards,
    reward_sum = reward_sum + excluded.reward_sum,
    reward_sq_sum = reward_sq_sum + excluded.reward_sq_sum
"""


class RoutingState(Protocol):
    """``assign`` counts a pull and remembers which arm served the request; ``reward`` takes
    that memory back (so each request is rewarded at most once) and adds the reward to the arm,
    returning the arm, or None for an unknown (or already rewarded, or expired) request."""

    async def assign(self, experiment: str, request_id: str, arm: str) -> None:
        """Count a pull of ``arm`` for ``request_id`` and remember it for the reward; the same
        assignment again (a write replayed after a timed-out reply) is counted once, a move to
        another arm (a failed canary answered by the serving variant) counts there too."""
        ...

    async def reward(self, experiment: str, request_id: str, reward: float) -> str | None: ...

    async def add_pull(self, experiment: str, arm: str) -> None: ...

    async def add_reward(self, experiment: str, arm: str, reward: float) -> None: ...

    async def stats(self, experiment: str) -> dict[str, ArmStats]: ...

    async def canary(self, key: str) -> CanaryState:
        """The canary's state (a fresh one at its first stage when none is stored)."""
        ...

    async def step_canary(self, key: str, step: CanaryStep) -> tuple[CanaryState, CanaryState]:
        """Apply ``step`` to the stored canary state atomically; returns (before, after)."""
        ...

    async def record_shadow(self, experiment: str, runs: Sequence[dict[str, Any]]) -> None: ...

    async def shadow_runs(self, experiment: str, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` shadow runs, newest first."""
        ...

    async def close(self) -> None: ...


class SqliteRoutingState:
    def __init__(self, path: Path) -> None:
        # every routed request writes here: survive a crash, but skip the fsync per commit
        self.db = open_database(path, SCHEMA, synced=False)
        self.lock = threading.Lock()  # one connection, many threads

    def _add(self, experiment: str, arm: str, delta: ArmStats) -> None:
        with self.lock, transaction(self.db) as db:
            db.execute(
                _ADD,
                (
                    experiment,
                    arm,
                    delta.pulls,
                    delta.rewards,
                    delta.reward_sum,
                    delta.reward_sq_sum,
                ),
            )

    def _stats(self, experiment: str) -> dict[str, ArmStats]:
        with self.lock:
            rows = self.db.execute(
                "SELECT arm, pulls, rewards, reward_sum, reward_sq_sum FROM arms "
                "WHERE experiment = ?",
                (experiment,),
            ).fetchall()
        return {arm: ArmStats(*values) for arm, *values in rows}

    def _assign(self, experiment: str, request_id: str, arm: str) -> None:
        now = time.time()
        with self.lock, transaction(self.db) as db:
            held = db.execute(
                "SELECT arm FROM assignments WHERE experiment = ? AND request_id = ?",
                (experiment, request_id),
            ).fetchone()
            if held is None or held[0] != arm:
                db.execute(_ADD, (experiment, arm, 1, 0, 0.0, 0.0))
                db.execute(
                    "INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?)",
                    (experiment, request_id, arm, now),
                )
            db.execute("DELETE FROM assignments WHERE time < ?", (now - KEEP_ASSIGNMENTS_S,))

    def _reward(self, experiment: str, request_id: str, reward: float) -> str | None:
        with self.lock, transaction(self.db) as db:
            row = db.execute(
                "DELETE FROM assignments WHERE experiment = ? AND request_id = ? RETURNING arm",
                (experiment, request_id),
            ).fetchone()
            if row is None:
                return None
            d = ArmStats().observed(reward)
            db.execute(_ADD, (experiment, row[0], 0, d.rewards, d.reward_sum, d.reward_sq_sum))
        return str(row[0])

    def _canary(self, key: str) -> CanaryState:
        with self.lock:
            row = self.db.execute("SELECT state FROM canaries WHERE key = ?", (key,)).fetchone()
        return CanaryState.from_dict(json.loads(row[0])) if row else CanaryState()

    def _step_canary(self, key: str, step: CanaryStep) -> tuple[CanaryState, CanaryState]:
        with self.lock, transaction(self.db) as db:  # IMMEDIATE: other processes wait
            row = db.execute("SELECT state FROM canaries WHERE key = ?", (key,)).fetchone()
            before = CanaryState.from_dict(json.loads(row[0])) if row else CanaryState()
            after = step(before)
            if after != before:
                db.execute(
                    "INSERT OR REPLACE INTO canaries VALUES (?, ?)",
                    (key, json.dumps(after.to_dict())),
                )
        return before, after

    def _record_shadow(self, experiment: str, runs: Sequence[dict[str, Any]]) -> None:
        now = time.time()
        rows = [(experiment, now, json.dumps(run)) for run in runs]
        with self.lock, transaction(self.db) as db:
            db.executemany("INSERT INTO shadow_runs VALUES (?, ?, ?)", rows)
            db.execute(
                "DELETE FROM shadow_runs WHERE experiment = ? AND time < ?",
                (experiment, now - KEEP_ASSIGNMENTS_S),
            )

    def _shadow_runs(self, experiment: str, limit: int) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT run FROM shadow_runs WHERE experiment = ? "
                "ORDER BY time DESC, rowid DESC LIMIT ?",
                (experiment, min(limit, KEEP_SHADOW_RUNS)),
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    async def assign(self, experiment: str, request_id: str, arm: str) -> None:
        await asyncio.to_thread(self._assign, experiment, request_id, arm)

    async def reward(self, experiment: str, request_id: str, reward: float) -> str | None:
        return await asyncio.to_thread(self._reward, experiment, request_id, reward)

    async def add_pull(self, experiment: str, arm: str) -> None:
        await asyncio.to_thread(self._add, experiment, arm, ArmStats(pulls=1))

    async def add_reward(self, experiment: str, arm: str, reward: float) -> None:
        await asyncio.to_thread(self._add, experiment, arm, ArmStats().observed(reward))

    async def stats(self, experiment: str) -> dict[str, ArmStats]:
        return await asyncio.to_thread(self._stats, experiment)

    async def canary(self, key: str) -> CanaryState:
        return await asyncio.to_thread(self._canary, key)

    async def step_canary(self, key: str, step: CanaryStep) -> tuple[CanaryState, CanaryState]:
        return await asyncio.to_thread(self._step_canary, key, step)

    async def record_shadow(self, experiment: str, runs: Sequence[dict[str, Any]]) -> None:
        await asyncio.to_thread(self._record_shadow, experiment, runs)

    async def shadow_runs(self, experiment: str, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._shadow_runs, experiment, limit)

    async def close(self) -> None:
        with self.lock:
            self.db.close()


# A request's assignment and its pull in one step, counted once per arm: a write that reached
# Redis but whose reply timed out is replayed after the outage (llmops.routing.resilient), and
# the replay must not count the pull again; a request moved to another arm (a failed canary
# answered by the serving variant) is counted there too. KEYS: request, arms set, arm hash;
# ARGV: arm, ttl.
_ASSIGN_ONCE = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] or held == '!' .. ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'pulls', 1)
return 1
"""
# A request's reward, counted once: the assignment is marked rewarded ('!' + arm, same expiry)
# in the step that counts it, so feedback sent twice (or resent after a timed-out reply) is
# not counted again. KEYS: request; ARGV: reward, its square, the arm hashes' key prefix.
_REWARD_ONCE = """
local arm = redis.call('GET', KEYS[1])
if (not arm) or string.sub(arm, 1, 1) == '!' then return false end
redis.call('SET', KEYS[1], '!' .. arm, 'KEEPTTL')
local key = ARGV[3] .. arm
redis.call('HINCRBY', key, 'rewards', 1)
redis.call('HINCRBYFLOAT', key, 'reward_sum', ARGV[1])
redis.call('HINCRBYFLOAT', key, 'reward_sq_sum', ARGV[2])
return arm
"""


class RedisRoutingState:
    """One hash per arm (``<prefix>:<experiment>:arm:<arm>``) and a set of an experiment's arms;
    updates are HINCRBY / HINCRBYFLOAT in one MULTI transaction; a request's assignment and
    its reward each run as one script that counts them once (see ``_ASSIGN_ONCE``)."""

    def __init__(
        self,
        url: str,
        prefix: str = "llmops:routing",
        max_connections: int = 32,
        socket_timeout_s: float | None = 2.0,
    ) -> None:
        self.client = async_redis(
            url, max_connections, socket_timeout_s, wait_s=10, decode_responses=True
        )
        self.prefix = prefix
        self._assign_once = self.client.register_script(_ASSIGN_ONCE)
        self._reward_once = self.client.register_script(_REWARD_ONCE)

    def _arm_key(self, experiment: str, arm: str) -> str:
        return f"{self.prefix}:{experiment}:arm:{arm}"

    def _arms_key(self, experiment: str) -> str:
        return f"{self.prefix}:{experiment}:arms"

    async def _add(self, experiment: str, arm: str, delta: ArmStats) -> None:
        """The arm's increments in one MULTI."""
        key = self._arm_key(experiment, arm)
        async with self.client.pipeline(transaction=True) as tx:
            tx.sadd(self._arms_key(experiment), arm)
            tx.hincrby(key, "pulls", delta.pulls)
            tx.hincrby(key, "rewards", delta.rewards)
            tx.hincrbyfloat(key, "reward_sum", delta.reward_sum)
            tx.hincrbyfloat(key, "reward_sq_sum", delta.reward_sq_sum)
            await tx.execute()

    def _request_key(self, experiment: str, request_id: str) -> str:
        return f"{self.prefix}:{experiment}:request:{request_id}"

    async def assign(self, experiment: str, request_id: str, arm: str) -> None:
        keys = [
            self._request_key(experiment, request_id),
            self._arms_key(experiment),
            self._arm_key(experiment, arm),
        ]
        await self._assign_once(keys=keys, args=[arm, KEEP_ASSIGNMENTS_S])

    async def reward(self, experiment: str, request_id: str, reward: float) -> str | None:
        arm_prefix = self._arm_key(experiment, "")
        args = [repr(float(reward)), repr(float(reward) ** 2), arm_prefix]
        arm = await self._reward_once(keys=[self._request_key(experiment, request_id)], args=args)
        return None if arm is None else str(arm)

    async def add_pull(self, experiment: str, arm: str) -> None:
        await self._add(experiment, arm, ArmStats(pulls=1))

    async def add_reward(self, experiment: str, arm: str, reward: float) -> None:
        await self._add(experiment, arm, ArmStats().observed(reward))

    async def add_stats(self, experiment: str, arm: str, delta: ArmStats) -> None:
        """Add a whole delta (counts kept during an outage) in one transaction."""
        await self._add(experiment, arm, delta)

    async def stats(self, experiment: str) -> dict[str, ArmStats]:
        arms = sorted(await self.client.smembers(self._arms_key(experiment)))
        async with self.client.pipeline(transaction=False) as pipe:
            for arm in arms:
                pipe.hgetall(self._arm_key(experiment, arm))
            rows = await pipe.execute()
        return {
            arm: ArmStats(
                int(row.get("pulls", 0)),
                int(row.get("rewards", 0)),
                float(row.get("reward_sum", 0.0)),
                float(row.get("reward_sq_sum", 0.0)),
            )
            for arm, row in zip(arms, rows, strict=True)
        }

    async def canary(self, key: str) -> CanaryState:
        raw = await self.client.get(self._canary_key(key))
        return CanaryState.from_dict(json.loads(raw)) if raw else CanaryState()

    async def step_canary(self, key: str, step: CanaryStep) -> tuple[CanaryState, CanaryState]:
        """Optimistic: WATCH the state, compute, write in MULTI; retry if another replica
        wrote in between."""
        import redis

        name = self._canary_key(key)
        async with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(name)
                    raw = await pipe.get(name)
                    before = CanaryState.from_dict(json.loads(raw)) if raw else CanaryState()
                    after = step(before)
                    if after == before:
                        await pipe.unwatch()
                        return before, after
                    pipe.multi()
                    pipe.set(name, json.dumps(after.to_dict()))
                    await pipe.execute()
                    return before, after
                except redis.WatchError:
                    continue

    def _canary_key(self, key: str) -> str:
        return f"{self.prefix}:canary:{key}"

    def _shadow_key(self, experiment: str) -> str:
        return f"{self.prefix}:{experiment}:shadow"

    async def record_shadow(self, experiment: str, runs: Sequence[dict[str, Any]]) -> None:
        async with self.client.pipeline(transaction=True) as tx:
            tx.lpush(self._shadow_key(experiment), *(json.dumps(run) for run in runs))
            tx.ltrim(self._shadow_key(experiment), 0, KEEP_SHADOW_RUNS - 1)
            await tx.execute()

    async def shadow_runs(self, experiment: str, limit: int) -> list[dict[str, Any]]:
        rows = await self.client.lrange(self._shadow_key(experiment), 0, limit - 1)
        return [json.loads(row) for row in rows]

    async def close(self) -> None:
        await self.client.aclose()
