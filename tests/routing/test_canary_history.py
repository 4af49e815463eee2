"""The canary's history: each move (advance or rollback) is kept with the numbers that decided
it, once per move however many replicas judge the ramp, bounded, in SQLite (surviving a
restart) and in a real Redis server; ``GET /experiments`` lists it newest first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.config.experiment import CanaryConfig
from llmops.routing.canary import CanaryMove, CanaryState
from llmops.routing.redis_state import RedisRoutingState
from llmops.routing.state import RoutingState, SqliteRoutingState
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter

POLICY = CanaryConfig(variant="new", stages=[0.1, 0.5, 1.0], window=4, max_error_rate=0.25)
KEEP = 3
Opener = Callable[[], RoutingState]


@pytest.fixture(params=["sqlite", "redis"])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens the store (again: a restart), keeping the newest ``KEEP`` moves per ramp."""
    if request.param == "sqlite":
        yield lambda: SqliteRoutingState(tmp_path / "routing.sqlite", keep_moves=KEEP)
    else:
        url = request.getfixturevalue("redis_url")
        yield lambda: RedisRoutingState(url, prefix=f"test:{request.node.name}", keep_moves=KEEP)


async def observe(states: list[RoutingState], outcomes: list[bool], key: str = "exp:new") -> None:
    """Each outcome judged by the next replica in turn, all at once."""
    await asyncio.gather(
        *(
            states[i % len(states)].step_canary(key, lambda s, ok=ok: s.observe(POLICY, ok, 20.0))
            for i, ok in enumerate(outcomes)
        )
    )


def test_a_move_carries_the_numbers_that_decided_it() -> None:
    state = CanaryState()
    for latency in (10.0, 20.0, 30.0, 40.0):
        state = state.observe(POLICY, True, latency, now=100.0)
    assert state.last_move == CanaryMove(
        time=100.0,
        move="advanced",
        from_stage=1,
        from_share=0.1,
        to_stage=2,
        to_share=0.5,
        reason="advanced 10% -> 50%: 0 errors in 4 requests, p95 40 ms",
        requests=4,
        errors=0,
        error_rate=0.0,
        p95_ms=40.0,
    )
    for ok in (False, True, False):
        state = state.observe(POLICY, ok, 5.0, now=200.0)
    move = state.last_move
    assert move is not None and state.rolled_back
    assert (move.move, move.from_share, move.to_share, move.to_stage) == ("rolled_back", 0.5, 0, 2)
    assert (move.requests, move.errors, move.error_rate, move.time) == (3, 2, 0.6667, 200.0)
    assert move.reason == state.reason
    assert CanaryState.from_dict(state.to_dict()) == state


def test_a_state_stored_before_moves_were_kept_still_loads() -> None:
    stored = CanaryState(stage=1, reason="advanced").to_dict()
    del stored["last_move"]
    assert CanaryState.from_dict(stored) == CanaryState(stage=1, reason="advanced")


async def test_each_move_is_recorded_once_across_replicas(opener: Opener) -> None:
    states = [opener(), opener()]  # two replicas judging one ramp
    await observe(states, [True] * 4)  # 10 % -> 50 %
    await observe(states, [True, False, True, False])  # 2 errors of 4: rolled back
    await observe(states, [True] * 8)  # rolled back: stays there, no move
    moves = await states[1].canary_history("exp:new", limit=10)
    other = await states[0].canary_history("exp:other", limit=10)
    for state in states:
        await state.close()
    assert [m.move for m in moves] == ["rolled_back", "advanced"] and other == []
    rollback, advance = moves
    assert (advance.from_share, advance.to_share, advance.requests) == (0.1, 0.5, 4)
    assert (rollback.from_stage, rollback.to_share, rollback.errors) == (2, 0.0, 2)
    assert rollback.time >= advance.time


async def test_the_history_is_bounded_and_survives_a_restart(opener: Opener) -> None:
    policy = CanaryConfig(variant="new", stages=[i / 10 for i in range(1, 11)], window=1)
    first = opener()
    for _ in range(9):  # window 1: each healthy request moves it one stage up
        await first.step_canary("exp:new", lambda s: s.observe(policy, True, 20.0))
    await first.close()
    again = opener()
    moves = await again.canary_history("exp:new", limit=100)
    two = await again.canary_history("exp:new", limit=2)
    await again.close()
    assert [(m.from_stage, m.to_stage) for m in moves] == [(9, 10), (8, 9), (7, 8)]
    assert two == moves[:2]


# GET /experiments --------------------------------------------------------------------------
DEAD = {"type": "openai_compat", "base_url": "http://127.0.0.1:9/v1", "model": "tiny"}


def canary_app(write_config: ConfigWriter, next_variant: dict[str, Any]) -> TestClient:
    section = {
        "name": "rollout",
        "strategy": "canary",
        "variants": {"stable": {}, "next": next_variant},
        "canary": {"variant": "next", "stages": [0.5, 1.0], "window": 4, "max_error_rate": 0.3},
    }
    rag = RAG.from_config(write_config(embedder=HASHING, experiment=section))
    rag.ingest()
    return TestClient(create_app(rag))


def ask(client: TestClient, users: range) -> None:
    for i in users:
        reply = client.post(
            "/query",
            json={"question": "How do I restore a backup?"},
            headers={"x-user-id": f"u{i}"},
        )
        assert reply.status_code == 200, reply.text


def test_experiments_lists_the_canarys_moves(write_config: ConfigWriter) -> None:
    with canary_app(write_config, {"retrieval": {"top_k": 2}}) as client:
        ramp = client.get("/experiments").json()["variants"]["next"]["canary"]
        assert ramp["history"] == []
        ask(client, range(40))
        ramp = client.get("/experiments").json()["variants"]["next"]["canary"]
    (move,) = ramp["history"]
    assert set(move) == {
        "time", "move", "from_stage", "from_share", "to_stage", "to_share", "reason",
        "requests", "errors", "error_rate", "p95_ms",
    }  # fmt: skip
    assert (move["move"], move["from_stage"], move["to_stage"]) == ("advanced", 1, 2)
    assert (move["from_share"], move["to_share"]) == (0.5, 1.0) == (0.5, ramp["share"])
    assert (move["requests"], move["errors"], move["reason"]) == (4, 0, ramp["reason"])
    assert move["p95_ms"] > 0


def test_experiments_shows_why_a_failing_canary_was_rolled_back(
    write_config: ConfigWriter,
) -> None:
    with canary_app(write_config, {"generator": {**DEAD, "max_retries": 0}}) as client:
        ask(client, range(40))
        ramp = client.get("/experiments").json()["variants"]["next"]["canary"]
    (move,) = ramp["history"]
    assert (move["move"], move["to_share"], ramp["rolled_back"]) == ("rolled_back", 0.0, True)
    assert (move["requests"], move["errors"], move["error_rate"]) == (2, 2, 1.0)
    assert move["reason"] == ramp["reason"]
