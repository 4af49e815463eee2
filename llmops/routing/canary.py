"""Canary releases: a ramp of traffic shares that advances while the canary behaves and rolls
back on its own when it does not.

The canary serves ``stages[i]`` of the traffic (``CanaryConfig``). Its requests are judged in
windows of ``window`` requests: when a window is full and its error rate and p95 latency are
within bounds, the canary moves to the next stage (a fresh window); when they are not, it is
rolled back to 0 % and stays there. A window that already holds more errors than the bound
allows is judged at once, without waiting for it to fill. Every move records its reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from llmops.config.experiment import CanaryConfig


@dataclass(frozen=True)
class CanaryState:
    """Where a canary stands; persisted by the routing state store between restarts."""

    stage: int = 0
    rolled_back: bool = False
    reason: str = "started"
    cause: str = ""  # why it rolled back: error_rate or p95_latency (a metric label)
    errors: int = 0
    latencies_ms: tuple[float, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CanaryState:
        return cls(**{**data, "latencies_ms": tuple(data["latencies_ms"])})

    @property
    def window_requests(self) -> int:
        """Canary requests seen in the current stage's window."""
        return len(self.latencies_ms)

    def share(self, policy: CanaryConfig) -> float:
        return 0.0 if self.rolled_back else policy.stages[self.stage]

    def observe(self, policy: CanaryConfig, ok: bool, latency_ms: float) -> CanaryState:
        """The state after one more canary request (unchanged once rolled back or at 100 %; a
        last stage below 100 % keeps being judged, window after window)."""
        if self.rolled_back or self._final(policy):
            return self
        seen = replace(
            self,
            errors=self.errors + (not ok),
            latencies_ms=(*self.latencies_ms, latency_ms),
        )
        allowed = math.floor(policy.max_error_rate * policy.window)
        if seen.errors > allowed:
            return seen._rollback(
                "error_rate",
                f"error rate {seen.errors}/{len(seen.latencies_ms)} requests exceeds "
                f"{policy.max_error_rate:.1%} of the {policy.window}-request window",
            )
        if len(seen.latencies_ms) < policy.window:
            return seen
        p95 = _p95(seen.latencies_ms)
        if p95 > policy.max_p95_ms:
            return seen._rollback(
                "p95_latency",
                f"p95 latency {p95:.0f} ms exceeds {policy.max_p95_ms:.0f} ms over "
                f"{policy.window} requests",
            )
        verdict = f"{seen.errors} errors in {policy.window} requests, p95 {p95:.0f} ms"
        share = policy.stages[self.stage]
        if self.stage == len(policy.stages) - 1:
            held = f"held at {share:.0%} (the last stage): {verdict}"
            return CanaryState(self.stage, reason=held)
        return CanaryState(
            stage=self.stage + 1,
            reason=f"advanced {share:.0%} -> {policy.stages[self.stage + 1]:.0%}: {verdict}",
        )

    def _final(self, policy: CanaryConfig) -> bool:
        return policy.stages[self.stage] >= 1.0

    def _rollback(self, cause: str, why: str) -> CanaryState:
        return CanaryState(self.stage, rolled_back=True, reason=f"rolled back: {why}", cause=cause)


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
