"""Thompson sampling over variants ("arms").

Each arm keeps how often it was chosen (``pulls``) and the rewards it got back (count, sum and
sum of squares). Binary feedback (thumbs up = 1, down = 0) uses a Beta-Bernoulli posterior,
Beta(1 + successes, 1 + failures); numeric rewards a Gaussian posterior for the mean,
Normal(mean, sd / sqrt(n)) with the sample standard deviation (1 until two rewards are in).

Each request draws one sample from every arm's posterior and takes the best, so traffic shifts
to the better arm as evidence grows while the worse one keeps being checked now and then.
``warmup`` pulls per arm come first (least-pulled arm first); ``min_share`` keeps at least that
share of traffic on every arm (it explores uniformly with probability ``min_share * arms``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from llmops.errors import InvalidRequest

RewardKind = Literal["binary", "numeric"]


@dataclass(frozen=True)
class ArmStats:
    pulls: int = 0
    rewards: int = 0
    reward_sum: float = 0.0
    reward_sq_sum: float = 0.0

    def observed(self, reward: float) -> ArmStats:
        return ArmStats(
            self.pulls,
            self.rewards + 1,
            self.reward_sum + reward,
            self.reward_sq_sum + reward * reward,
        )

    def pulled(self) -> ArmStats:
        return ArmStats(self.pulls + 1, self.rewards, self.reward_sum, self.reward_sq_sum)

    @property
    def mean_reward(self) -> float | None:
        return self.reward_sum / self.rewards if self.rewards else None


@dataclass(frozen=True)
class Posterior:
    mean: float
    low: float  # 95 % credible interval
    high: float


class ThompsonSampler:
    def __init__(
        self,
        arms: Sequence[str],
        reward: RewardKind = "binary",
        *,
        min_share: float = 0.0,
        warmup: int = 0,
        seed: int | None = None,
    ) -> None:
        if len(arms) < 2 or len(set(arms)) != len(arms):
            raise InvalidRequest(f"a bandit needs two or more distinct arms; got {list(arms)}")
        if not 0.0 <= min_share * len(arms) <= 1.0:
            raise InvalidRequest(
                f"min_share {min_share} is too large for {len(arms)} arms: at most "
                f"{1 / len(arms):.3g} (every arm's minimum must fit in 100 %)"
            )
        self.arms = tuple(arms)
        self.reward = reward
        self.min_share = min_share
        self.warmup = warmup
        self.rng = np.random.default_rng(seed)

    def choose(self, stats: Mapping[str, ArmStats]) -> str:
        current = [stats.get(arm, ArmStats()) for arm in self.arms]
        fewest = min(range(len(current)), key=lambda i: current[i].pulls)
        if current[fewest].pulls < self.warmup:
            return self.arms[fewest]
        if self.min_share and self.rng.random() < self.min_share * len(self.arms):
            return self.arms[int(self.rng.integers(len(self.arms)))]
        draws = [self._draw(s) for s in current]
        return self.arms[int(np.argmax(draws))]

    def _draw(self, s: ArmStats) -> float:
        if self.reward == "binary":
            return float(self.rng.beta(1 + s.reward_sum, 1 + s.rewards - s.reward_sum))
        mean, sd = _gaussian(s)
        return float(self.rng.normal(mean, sd))

    def posterior(self, s: ArmStats) -> Posterior:
        """Posterior mean of the arm's reward with a 95 % interval (for GET /experiments)."""
        if self.reward == "binary":
            a, b = 1 + s.reward_sum, 1 + s.rewards - s.reward_sum
            samples = np.random.default_rng(0).beta(a, b, 4000)
            low, high = np.quantile(samples, [0.025, 0.975])
            return Posterior(a / (a + b), float(low), float(high))
        mean, sd = _gaussian(s)
        return Posterior(mean, mean - 1.96 * sd, mean + 1.96 * sd)


def _gaussian(s: ArmStats) -> tuple[float, float]:
    """Mean and standard error of the mean reward (a wide prior before any reward is in)."""
    if s.rewards == 0:
        return 0.0, 1e3
    mean = s.reward_sum / s.rewards
    if s.rewards < 2:
        return mean, 1.0
    variance = max(s.reward_sq_sum / s.rewards - mean * mean, 0.0) * s.rewards / (s.rewards - 1)
    return mean, max(math.sqrt(variance), 1e-6) / math.sqrt(s.rewards)
