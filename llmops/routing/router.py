"""``ExperimentRouter``: picks the variant that serves each request and learns from feedback.

``weighted`` hashes the request's key (a user or session id; the request id when there is
none) into the split, so a user keeps their variant; ``thompson`` samples the arms' posteriors
from the shared state. Every assignment is stored, so ``POST /feedback`` can credit the variant
that served a request, once.
"""

from __future__ import annotations

from typing import Any

from llmops.config.experiment import ExperimentConfig
from llmops.errors import InvalidRequest
from llmops.routing.bandit import ArmStats, ThompsonSampler
from llmops.routing.split import WeightedSplit
from llmops.routing.state import RoutingState


class UnknownRequest(InvalidRequest):
    """Feedback for a request this experiment did not serve (or already rewarded)."""


class ExperimentRouter:
    def __init__(self, config: ExperimentConfig, state: RoutingState, app: str) -> None:
        self.config = config
        self.state = state
        self.split = WeightedSplit.of(config.shares(), salt=f"{app}:{config.name}")
        self.sampler = ThompsonSampler(
            list(config.variants),
            config.reward,
            min_share=config.min_share,
            warmup=config.warmup,
        )

    @property
    def name(self) -> str:
        return self.config.name

    async def choose(self, request_id: str, key: str | None = None) -> str:
        if self.config.strategy == "thompson":
            variant = self.sampler.choose(await self.state.stats(self.name))
        else:
            variant = self.split.assign(key or request_id)
        await self.state.assign(self.name, request_id, variant)
        return variant

    async def feedback(self, request_id: str, reward: float) -> str:
        """Credit ``reward`` to the variant that served ``request_id``; returns its name."""
        if self.config.reward == "binary" and reward not in (0.0, 1.0):
            raise InvalidRequest(
                f"experiment '{self.name}' takes binary feedback: reward 1 (good) or 0 (bad), "
                f"not {reward:g}"
            )
        variant = await self.state.reward(self.name, request_id, reward)
        if variant is None:
            raise UnknownRequest(
                f"experiment '{self.name}' has no open request '{request_id}': unknown, older "
                "than 7 days, or already rated"
            )
        return variant

    async def report(self) -> dict[str, Any]:
        """Per variant: traffic, rewards and the posterior of its mean reward."""
        stats = await self.state.stats(self.name)
        pulls = sum(s.pulls for s in stats.values()) or 1
        variants = {}
        for name in self.config.variants:
            s = stats.get(name, ArmStats())
            posterior = self.sampler.posterior(s) if s.rewards else None
            variants[name] = {
                "requests": s.pulls,
                "share": round(s.pulls / pulls, 4),
                "rewards": s.rewards,
                "mean_reward": s.mean_reward,
                "posterior_mean": posterior.mean if posterior else None,
                "posterior_interval": [posterior.low, posterior.high] if posterior else None,
            }
        return {"experiment": self.name, "strategy": self.config.strategy, "variants": variants}
