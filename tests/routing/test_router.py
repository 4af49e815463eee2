"""The router with its stored state: a user keeps their variant across 10,000 requests and a
restart, the observed split is within one point of the weights, and the canary's share follows
the stored ramp."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from llmops.config.experiment import ExperimentConfig
from llmops.routing.router import ExperimentRouter
from llmops.routing.state import SqliteRoutingState

WEIGHTS = {"control": 70, "concise": 20, "big": 10}


def weighted() -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {"name": "exp", "variants": {name: {} for name in WEIGHTS}, "weights": WEIGHTS}
    )


async def test_users_keep_their_variant_across_10000_requests_and_a_restart(
    tmp_path: Path,
) -> None:
    router = ExperimentRouter(weighted(), SqliteRoutingState(tmp_path / "r.sqlite"), "app")
    first: dict[str, str] = {}
    for n in range(10_000):
        user = f"user-{n % 2000}"
        variant = await router.choose(f"request-{n}", user)
        assert first.setdefault(user, variant) == variant
    await router.state.close()
    restarted = ExperimentRouter(weighted(), SqliteRoutingState(tmp_path / "r.sqlite"), "app")
    again = {user: await restarted.choose(f"again-{user}", user) for user in first}
    stats = await restarted.state.stats("exp")
    await restarted.state.close()
    assert again == first
    assert sum(s.pulls for s in stats.values()) == 10_000 + len(first)
    shares = Counter(first.values())
    for name, weight in WEIGHTS.items():
        assert abs(shares[name] / len(first) - weight / 100) < 0.03, shares  # 2,000 users
    traffic = {name: stats[name].pulls / (10_000 + len(first)) for name in WEIGHTS}
    assert all(abs(traffic[n] - WEIGHTS[n] / 100) < 0.03 for n in WEIGHTS), traffic


async def test_the_observed_split_over_10000_users_is_within_one_point(tmp_path: Path) -> None:
    router = ExperimentRouter(weighted(), SqliteRoutingState(tmp_path / "r.sqlite"), "app")
    counts = Counter([await router.choose(f"r{i}", f"session-{i}") for i in range(10_000)])
    await router.state.close()
    for name, weight in WEIGHTS.items():
        assert abs(counts[name] / 10_000 - weight / 100) < 0.01, counts


async def test_canary_users_follow_the_stored_ramp(tmp_path: Path) -> None:
    config = ExperimentConfig.model_validate(
        {
            "name": "exp",
            "strategy": "canary",
            "variants": {"stable": {}, "next": {}},
            "canary": {"variant": "next", "stages": [0.1, 0.5, 1.0], "window": 3},
        }
    )
    router = ExperimentRouter(config, SqliteRoutingState(tmp_path / "r.sqlite"), "app")
    users = [f"u{i}" for i in range(3000)]

    async def canary_users() -> set[str]:
        return {u for u in users if await router.choose(f"r-{u}", u) == "next"}

    at_10 = await canary_users()
    for _ in range(3):
        await router.observe_canary(True, 50.0)
    at_50 = await canary_users()
    for _ in range(2):
        await router.observe_canary(False, 50.0)
    after_rollback = await canary_users()
    await router.state.close()
    assert abs(len(at_10) / 3000 - 0.1) < 0.02 and abs(len(at_50) / 3000 - 0.5) < 0.03
    assert at_10 <= at_50  # raising the share keeps the canary's users
    assert after_rollback == set()
