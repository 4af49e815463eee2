"""Routing among registered versions at request time: the RAG apps' experiment strategies
(``ExperimentRouter``: sticky weighted A/B, Thompson sampling, shadow, canary) with variants
that are registry references (``production``, ``candidate``, ``7``).

- ``canary``: a canary request that fails is answered by the stable version instead, and every
  canary request's outcome and latency move the ramp (advance or roll back);
- ``shadow``: after the serving version has answered, the shadow version predicts the same rows
  in the background; both answers and their agreement (share of equal labels) are recorded;
- ``thompson``: the reward of a request is whether its prediction was right, once its label
  arrives (``POST /labels``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from llmops.config.experiment import ExperimentPolicy
from llmops.monitoring.metrics import ExperimentMetrics
from llmops.pipelines.experiment import open_state
from llmops.routing.canary import CanaryState
from llmops.routing.router import ExperimentRouter
from llmops.routing.shadow import Run, ShadowRunner

log = logging.getLogger(__name__)

CanaryMoved = Callable[[CanaryState, CanaryState], Awaitable[None]]
"""Told the ramp's state before and after each canary request that moved it."""


class ModelRouting:
    def __init__(
        self,
        config: ExperimentPolicy,
        refs: Mapping[str, str],
        app: str,
        data_dir: Path,
        metrics: ExperimentMetrics,
        on_canary_move: CanaryMoved | None = None,
    ) -> None:
        """``refs``: variant → the registry reference it serves."""
        self.config, self.refs, self.metrics = config, dict(refs), metrics
        self.on_canary_move = on_canary_move
        self.router = ExperimentRouter(config, open_state(config, data_dir), app)
        shadow, salt = config.shadow, self.router.split.salt
        self.shadows = (
            ShadowRunner(shadow, self.router.state, config.name, salt, self._count)
            if shadow is not None
            else None
        )

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def stable(self) -> str:
        """The variant that serves beside a canary or a shadow."""
        return self.config.serving

    @property
    def canary(self) -> str | None:
        return self.config.canary.variant if self.config.canary else None

    async def start(self) -> None:
        if self.config.canary is not None:
            state = await self.router.state.canary(self.router.canary_key)
            self._report_canary(state, None)

    async def close(self) -> None:
        if self.shadows is not None:
            await self.shadows.close()
        await self.router.state.close()

    async def choose(self, request_id: str, key: str | None) -> str:
        return await self.router.choose(request_id, key)

    async def canary_failed(self, request_id: str, latency_ms: float) -> str:
        """A canary request failed: count it against the ramp; returns the stable variant,
        which answers instead (and is credited with the request)."""
        await self.observe_canary(False, latency_ms)
        await self.router.reassign(request_id, self.stable)
        return self.stable

    async def observe_canary(self, ok: bool, latency_ms: float) -> CanaryState:
        before, after = await self.router.observe_canary(ok, latency_ms)
        move = after.moved_from(before)
        if move is not None:
            self._report_canary(after, move)
            log.warning("canary '%s' %s", self.canary, after.reason)
            if self.on_canary_move is not None:
                await self.on_canary_move(before, after)
        return after

    def shadow(self, request_id: str, run: Run) -> None:
        if self.shadows is not None:
            self.shadows.submit(request_id, run)

    def _report_canary(self, state: CanaryState, move: str | None) -> None:
        policy = self.router.canary_policy
        self.metrics.canary(self.name, policy.variant, state.share(policy), move)

    def _count(self, outcome: str, agreement: float | None) -> None:
        if self.config.shadow is not None:
            self.metrics.shadow_run(self.name, self.config.shadow.variant, outcome, agreement)
