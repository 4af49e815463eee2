"""Routing state in SQLite and in a real Redis server: survives a restart, and concurrent
updates from many tasks lose nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmops.config.experiment import CanaryConfig
from llmops.routing.redis_state import RedisRoutingState
from llmops.routing.state import RoutingState, SqliteRoutingState


@pytest.fixture(params=["sqlite", "redis"])
async def opener(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, object]]:
    if request.param == "sqlite":
        yield "sqlite", lambda: SqliteRoutingState(tmp_path / "routing.sqlite")
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"test:{request.node.name}"
        # a generous socket timeout: 64 connections opened at once on a loaded CI machine can
        # take longer than the 2 s default to connect; this file tests consistency, not timeouts
        yield "redis", lambda: RedisRoutingState(url, prefix=prefix, socket_timeout_s=10.0)


async def test_concurrent_updates_lose_nothing(opener: tuple[str, object]) -> None:
    _, make = opener
    states: list[RoutingState] = [make(), make()]  # type: ignore[operator]  # two replicas
    tasks = [
        states[i % 2].add_reward("exp", "a" if i % 3 else "b", float(i % 2)) for i in range(300)
    ] + [states[i % 2].add_pull("exp", "a") for i in range(200)]
    await asyncio.gather(*tasks)
    stats = await states[0].stats("exp")
    for state in states:
        await state.close()
    a_rewards = [float(i % 2) for i in range(300) if i % 3]
    b_rewards = [float(i % 2) for i in range(300) if not i % 3]
    assert stats["a"].pulls == 200 and stats["b"].pulls == 0
    assert stats["a"].rewards == len(a_rewards) and stats["b"].rewards == len(b_rewards)
    assert stats["a"].reward_sum == pytest.approx(sum(a_rewards))
    assert stats["b"].reward_sq_sum == pytest.approx(sum(r * r for r in b_rewards))


async def test_state_survives_a_restart(opener: tuple[str, object]) -> None:
    _, make = opener
    first: RoutingState = make()  # type: ignore[operator]
    await first.add_pull("exp", "a")
    await first.add_reward("exp", "a", 1.0)
    await first.close()
    again: RoutingState = make()  # type: ignore[operator]
    stats = await again.stats("exp")
    assert await again.stats("other") == {}
    await again.close()
    assert (stats["a"].pulls, stats["a"].rewards, stats["a"].reward_sum) == (1, 1, 1.0)


async def test_a_request_is_rewarded_once_on_its_arm(opener: tuple[str, object]) -> None:
    _, make = opener
    state: RoutingState = make()  # type: ignore[operator]
    await state.assign("exp", "r1", "a")  # a canary that failed: "b" answered it
    await state.assign("exp", "r1", "b")
    await state.assign("exp", "r1", "b")  # replayed after a reply that timed out
    assert await state.reward("exp", "r1", 1.0) == "b"
    assert await state.reward("exp", "r1", 1.0) is None  # already rewarded
    assert await state.reward("exp", "unknown", 1.0) is None
    stats = await state.stats("exp")
    await state.close()
    assert (stats["b"].pulls, stats["b"].rewards, stats["b"].reward_sum) == (1, 1, 1.0)
    assert (stats["a"].pulls, stats["a"].rewards) == (1, 0)


async def test_concurrent_canary_steps_lose_nothing(opener: tuple[str, object]) -> None:
    _, make = opener
    states: list[RoutingState] = [make(), make()]  # type: ignore[operator]  # two replicas
    policy = CanaryConfig(variant="new", stages=[0.1, 1.0], window=50, max_error_rate=0.5)
    await asyncio.gather(
        *(
            states[i % 2].step_canary("exp:new", lambda s: s.observe(policy, True, 10.0))
            for i in range(40)
        )
    )
    seen = await states[1].canary("exp:new")
    _, after = await states[0].step_canary("exp:new", lambda s: s.observe(policy, False, 10.0))
    restarted: RoutingState = make()  # type: ignore[operator]
    stored = await restarted.canary("exp:new")
    for state in (*states, restarted):
        await state.close()
    assert seen.window_requests == 40 and seen.stage == 0
    assert stored == after and (after.window_requests, after.errors) == (41, 1)


async def test_shadow_runs_come_back_newest_first(opener: tuple[str, object]) -> None:
    _, make = opener
    state: RoutingState = make()  # type: ignore[operator]
    await state.record_shadow("exp", [{"request_id": "r0"}, {"request_id": "r1"}])
    for i in range(2, 5):
        await state.record_shadow("exp", [{"request_id": f"r{i}", "agreement": i / 4}])
    runs = await state.shadow_runs("exp", limit=3)
    other = await state.shadow_runs("other", limit=3)
    await state.close()
    assert [r["request_id"] for r in runs] == ["r4", "r3", "r2"] and other == []
