"""The routing state in Redis, for several replicas sharing one experiment: the same contract
as ``llmops.routing.state.RoutingState``, every update atomic in Redis itself (MULTI
transactions and Lua scripts)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llmops.redis_pool import async_redis
from llmops.routing.bandit import ArmStats
from llmops.routing.canary import CanaryMove, CanaryState
from llmops.routing.state import (
    KEEP_ASSIGNMENTS_S,
    KEEP_CANARY_MOVES,
    KEEP_SHADOW_RUNS,
    CanaryStep,
)

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
        keep_moves: int = KEEP_CANARY_MOVES,
    ) -> None:
        self.client = async_redis(
            url, max_connections, socket_timeout_s, wait_s=10, decode_responses=True
        )
        self.prefix, self.keep_moves = prefix, keep_moves
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
        """Optimistic: WATCH the state, compute, write it and push its move on the ramp's
        history (trimmed) in one MULTI; retry if another replica wrote in between."""
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
                    if (move := after.move_since(before)) is not None:
                        pipe.lpush(self._moves_key(key), json.dumps(move.to_dict()))
                        pipe.ltrim(self._moves_key(key), 0, self.keep_moves - 1)
                    await pipe.execute()
                    return before, after
                except redis.WatchError:
                    continue

    def _canary_key(self, key: str) -> str:
        return f"{self.prefix}:canary:{key}"

    def _moves_key(self, key: str) -> str:
        return f"{self.prefix}:canary:{key}:moves"

    async def canary_history(self, key: str, limit: int) -> list[CanaryMove]:
        if limit < 1:  # LRANGE 0 -1 would be all of them
            return []
        rows = await self.client.lrange(self._moves_key(key), 0, min(limit, self.keep_moves) - 1)
        return [CanaryMove(**json.loads(row)) for row in rows]

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
