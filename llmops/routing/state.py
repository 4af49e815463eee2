"""Where experiments keep their per-arm traffic and rewards, canary ramps and shadow runs:
SQLite in the app's data dir by default (survives restarts, shared by the worker processes of
one machine), Redis for several replicas sharing one experiment (``redis_state``). Every
update is atomic in the store itself (increments; a canary step is a read-modify-write in one
transaction, its move added to the ramp's history in the same one), so concurrent requests
from any number of threads or processes lose nothing and record each move once.
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
from llmops.routing.bandit import ArmStats
from llmops.routing.canary import CanaryMove, CanaryState

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
CREATE TABLE IF NOT EXISTS canary_moves (
    key TEXT NOT NULL,
    move TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS canary_moves_by_key ON canary_moves (key);
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
KEEP_CANARY_MOVES = 100
"""Moves kept per canary ramp by default (the newest; a ramp moves at most once per stage and
once back, so only a ramp of many stages reaches this)."""
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
        """Apply ``step`` to the stored canary state atomically, adding the move it made (if
        any) to the ramp's history in the same transaction; returns (before, after)."""
        ...

    async def canary_history(self, key: str, limit: int) -> list[CanaryMove]:
        """The ramp's newest ``limit`` moves (of the store's ``keep_moves``), newest first."""
        ...

    async def record_shadow(self, experiment: str, runs: Sequence[dict[str, Any]]) -> None: ...

    async def shadow_runs(self, experiment: str, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` shadow runs, newest first."""
        ...

    async def close(self) -> None: ...


class SqliteRoutingState:
    def __init__(self, path: Path, keep_moves: int = KEEP_CANARY_MOVES) -> None:
        # every routed request writes here: survive a crash, but skip the fsync per commit
        self.db = open_database(path, SCHEMA, synced=False)
        self.lock = threading.Lock()  # one connection, many threads
        self.keep_moves = keep_moves

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
            if (move := after.move_since(before)) is not None:
                db.execute(
                    "INSERT INTO canary_moves VALUES (?, ?)", (key, json.dumps(move.to_dict()))
                )
                db.execute(
                    "DELETE FROM canary_moves WHERE key = ? AND rowid NOT IN (SELECT rowid FROM "
                    "canary_moves WHERE key = ? ORDER BY rowid DESC LIMIT ?)",
                    (key, key, self.keep_moves),
                )
        return before, after

    def _canary_history(self, key: str, limit: int) -> list[CanaryMove]:
        with self.lock:
            rows = self.db.execute(
                "SELECT move FROM canary_moves WHERE key = ? ORDER BY rowid DESC LIMIT ?",
                (key, min(limit, self.keep_moves)),
            ).fetchall()
        return [CanaryMove(**json.loads(row[0])) for row in rows]

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

    async def canary_history(self, key: str, limit: int) -> list[CanaryMove]:
        return await asyncio.to_thread(self._canary_history, key, limit)

    async def record_shadow(self, experiment: str, runs: Sequence[dict[str, Any]]) -> None:
        await asyncio.to_thread(self._record_shadow, experiment, runs)

    async def shadow_runs(self, experiment: str, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._shadow_runs, experiment, limit)

    async def close(self) -> None:
        with self.lock:
            self.db.close()
