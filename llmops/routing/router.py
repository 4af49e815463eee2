"""``ExperimentRouter``: picks the variant that serves each request and learns from feedback.

``weighted`` hashes the request's key (a user or session id; the request id when there is
none) into the split, so a user keeps their variant; ``thompson`` samples the arms' posteriors
from the shared state; ``canary`` sends the users whose point falls below the canary's current
share to the canary (raising the share keeps them there); ``shadow`` always picks the serving
variant (the shadow runs beside it). Every assignment is stored, so ``POST /feedback`` can
credit the variant that served a request, once.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from llmops.config.experiment import CanaryConfig, ExperimentPolicy
from llmops.errors import InvalidRequest
from llmops.routing.bandit import ArmStats, ThompsonSampler
from llmops.routing.canary import CanaryState
from llmops.routing.shadow import summarize
from llmops.routing.split import WeightedSplit, unit_point
from llmops.routing.state import RoutingState

SUMMARY_RUNS = 1000
"""The report summarises the newest shadow runs, this many."""
HISTORY_MOVES = 50
"""The report lists the canary's newest moves, this many."""


class UnknownRequest(InvalidRequest):
    """Feedback for a request this experiment did not serve (or already rewarded)."""


class NoShadow(InvalidRequest):
    """Shadow runs asked of an experiment that runs no shadow."""


class ExperimentRouter:
    def __init__(self, config: ExperimentPolicy, state: RoutingState, app: str) -> None:
        self.config = config
        self.state = state
        self.split = WeightedSplit.of(config.shares(), salt=f"{app}:{config.name}")
        self.sampler = ThompsonSampler(
            list(config.variants),
            config.reward,
            min_share=config.min_share,
            warmup=config.warmup,
        )
        strategies: dict[str, Callable[[str], Awaitable[str]]] = {
            "weighted": self._weighted_choice,
            "thompson": self._thompson_choice,
            "canary": self._canary_choice,
            "shadow": self._shadow_choice,
        }
        self._strategy = strategies[config.strategy]

    @property
    def name(self) -> str:
        return self.config.name

    async def choose(self, request_id: str, key: str | None = None) -> str:
        """The variant for this request (``key``: who asks, the request id when unknown),
        stored as the request's assignment."""
        variant = await self._strategy(key or request_id)
        await self.state.assign(self.name, request_id, variant)
        return variant

    async def _weighted_choice(self, key: str) -> str:
        return self.split.assign(key)

    async def _thompson_choice(self, key: str) -> str:
        return self.sampler.choose(await self.state.stats(self.name))

    async def _shadow_choice(self, key: str) -> str:
        return self.config.serving

    async def reassign(self, request_id: str, variant: str) -> None:
        """``variant`` served the request after all (the stable one, when the canary failed)."""
        await self.state.assign(self.name, request_id, variant)

    # canary ----------------------------------------------------------------------------------
    @property
    def canary_policy(self) -> CanaryConfig:
        if self.config.canary is None:
            raise RuntimeError(f"experiment '{self.name}' runs no canary")
        return self.config.canary

    @functools.cached_property
    def canary_key(self) -> str:
        """Names the ramp's stored state; changing the canary variant or its ramp starts a new
        ramp (computed once: every canary request reads it)."""
        policy = self.canary_policy
        settings = {
            "variant": self.config.variants[policy.variant].model_dump(mode="json"),
            "ramp": policy.model_dump(mode="json"),
        }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
        return f"{self.name}:{policy.variant}:{digest[:12]}"

    async def _canary_choice(self, key: str) -> str:
        share = (await self.state.canary(self.canary_key)).share(self.canary_policy)
        if unit_point(key, self.split.salt) < share:
            return self.canary_policy.variant
        return self.config.serving

    async def observe_canary(self, ok: bool, latency_ms: float) -> tuple[CanaryState, CanaryState]:
        """Judge one canary request; returns the ramp's state before and after it."""
        policy = self.canary_policy
        return await self.state.step_canary(
            self.canary_key, lambda state: state.observe(policy, ok, latency_ms)
        )

    async def shadow_runs(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` shadow runs, newest first."""
        if self.config.shadow is None:
            raise NoShadow(f"experiment '{self.name}' runs no shadow (strategy: shadow)")
        return await self.state.shadow_runs(self.name, limit)

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
        """Per variant: traffic, rewards and the posterior of its mean reward; the canary's
        ramp and the shadow's agreement on their variants."""
        stats = await self.state.stats(self.name)
        pulls = sum(s.pulls for s in stats.values()) or 1
        variants: dict[str, dict[str, Any]] = {}
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
        if self.config.canary is not None:
            variants[self.config.canary.variant]["canary"] = await self._canary_report()
        if self.config.shadow is not None:
            runs = await self.state.shadow_runs(self.name, limit=SUMMARY_RUNS)
            variants[self.config.shadow.variant]["shadow"] = summarize(runs)
        report = {"experiment": self.name, "strategy": self.config.strategy, "variants": variants}
        health = getattr(self.state, "health", None)  # a shared store says if it is reachable
        if health is not None:
            report["state"] = health()
        return report

    async def _canary_report(self) -> dict[str, Any]:
        policy, state = self.canary_policy, await self.state.canary(self.canary_key)
        history = await self.state.canary_history(self.canary_key, HISTORY_MOVES)
        return {
            "stage": state.stage + 1,
            "stages": policy.stages,
            "share": state.share(policy),
            "rolled_back": state.rolled_back,
            "reason": state.reason,
            "window": {
                "requests": state.window_requests,
                "errors": state.errors,
                "size": policy.window,
            },
            "history": [move.to_dict() for move in history],
        }
