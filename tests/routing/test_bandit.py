"""Thompson sampling: learns the better arm (binary and numeric rewards), honours warm-up and a
minimum share, refuses impossible settings; posteriors for GET /experiments."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from llmops.errors import InvalidRequest
from llmops.routing.bandit import ArmStats, ThompsonSampler


def simulate(
    sampler: ThompsonSampler, reward: dict[str, object], steps: int, seed: int = 1
) -> Counter[str]:
    rng = np.random.default_rng(seed)
    stats = {arm: ArmStats() for arm in sampler.arms}
    chosen: Counter[str] = Counter()
    for _ in range(steps):
        arm = sampler.choose(stats)
        chosen[arm] += 1
        draw = reward[arm]
        value = float(rng.random() < draw) if isinstance(draw, float) else float(draw(rng))  # type: ignore[operator]
        stats[arm] = stats[arm].pulled().observed(value)
    return chosen


def test_binary_rewards_move_traffic_to_the_better_arm() -> None:
    chosen = simulate(ThompsonSampler(["a", "b"], seed=0), {"a": 0.55, "b": 0.45}, 4000)
    assert chosen["a"] > 0.75 * 4000


def test_numeric_rewards_use_the_gaussian_posterior() -> None:
    rewards = {
        "a": lambda rng: rng.normal(3.0, 1.0),
        "b": lambda rng: rng.normal(3.5, 1.0),
    }
    chosen = simulate(ThompsonSampler(["a", "b"], "numeric", seed=0), rewards, 2000)
    assert chosen["b"] > 0.85 * 2000


def test_warmup_pulls_every_arm_first() -> None:
    sampler = ThompsonSampler(["a", "b", "c"], warmup=5, seed=0)
    stats = {"a": ArmStats(pulls=5), "b": ArmStats(pulls=2), "c": ArmStats(pulls=4)}
    assert sampler.choose(stats) == "b"


def test_min_share_keeps_exploring_a_losing_arm() -> None:
    sampler = ThompsonSampler(["a", "b"], min_share=0.1, seed=0)
    stats = {"a": ArmStats(1000, 1000, 900.0, 900.0), "b": ArmStats(1000, 1000, 100.0, 100.0)}
    chosen = Counter(sampler.choose(stats) for _ in range(5000))
    assert 0.08 < chosen["b"] / 5000 < 0.12  # exploration alone: 0.1 * 2 arms / 2


@pytest.mark.parametrize(
    ("arms", "options", "message"),
    [
        (["a"], {}, "two or more distinct arms"),
        (["a", "a"], {}, "two or more distinct arms"),
        (["a", "b", "c"], {"min_share": 0.4}, "at most 0.333"),
    ],
)
def test_impossible_settings_are_refused(
    arms: list[str], options: dict[str, float], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        ThompsonSampler(arms, **options)  # type: ignore[arg-type]


def test_posteriors_narrow_with_evidence() -> None:
    sampler = ThompsonSampler(["a", "b"])
    few = sampler.posterior(ArmStats(10, 10, 6.0, 6.0))
    many = sampler.posterior(ArmStats(1000, 1000, 600.0, 600.0))
    assert few.low < 0.6 < few.high and many.low < 0.6 < many.high
    assert many.high - many.low < (few.high - few.low) / 5
    gaussian = ThompsonSampler(["a", "b"], "numeric").posterior(ArmStats(4, 4, 8.0, 18.0))
    assert gaussian.mean == pytest.approx(2.0) and gaussian.low < 2.0 < gaussian.high
