"""Canary releases: a ramp of traffic shares that advances while the canary behaves and rolls
back on its own when it does not.

The canary serves ``stages[i]`` of the traffic (``CanaryConfig``). Its requests are judged in
windows of ``window`` requests: when a window is full and its error rate and p95 latency are
within bounds, the canary moves to the next stage (a fresh window); when they are not, it is
rolled back to 0 % and stays there. A window that already holds more errors than the bound
allows is judged at once, without waiting for it to fill. Every move records its reason and
the numbers that decided it (``CanaryMove``); the state store keeps a bounded history of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from llmops.config.experiment import CanaryConfig


@dataclass(frozen=True)
class CanaryMove:
    """One move of a ramp, with the window that decided it: stages count from 1 (as
    ``GET /experiments`` shows them); ``p95_ms`` is that of the requests judged."""

    time: float
    move: Literal["advanced", "rolled_back"]
    from_stage: int
    from_share: float
    to_stage: int
    to_share: float
    reason: str
    requests: int
    errors: int
    error_rate: float
    p95_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CanaryState:
    """Where a canary stands; persisted by the routing state store between restarts."""

    stage: int = 0
    rolled_back: bool = False
    reason: str = "started"
    cause: str = ""  # why it rolled back: error_rate or p95_latency (a metric label)
    errors: int = 0
    latencies_ms: tuple[float, ...] = field(default_factory=tuple)
    last_move: CanaryMove | None = None  # the move that led here (None: none yet)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CanaryState:
        move = data.get("last_move")  # absent in states stored before moves were kept
        return cls(
            **{
                **data,
                "latencies_ms": tuple(data["latencies_ms"]),
                "last_move": CanaryMove(**move) if move else None,
            }
        )

    def moved_from(self, before: CanaryState) -> str | None:
        """How the ramp moved since ``before``, as the canary metric's ``move`` label
        (``advanced``, ``rolled_back_<cause>``); None when it did not (a request only filled
        the window)."""
        if self.stage == before.stage and self.rolled_back == before.rolled_back:
            return None
        return f"rolled_back_{self.cause}" if self.rolled_back else "advanced"

    def move_since(self, before: CanaryState) -> CanaryMove | None:
        """The move that led from ``before`` to this state; None when it did not move."""
        return self.last_move if self.last_move != before.last_move else None

    @property
    def window_requests(self) -> int:
        """Canary requests seen in the current stage's window."""
        return len(self.latencies_ms)

    def share(self, policy: CanaryConfig) -> float:
        return 0.0 if self.rolled_back else policy.stages[self.stage]

    def observe(
        self, policy: CanaryConfig, ok: bool, latency_ms: float, now: float | None = None
    ) -> CanaryState:
        """The state after one more canary request at ``now`` (epoch seconds; default: the
        clock), unchanged once rolled back or at 100 %; a last stage below 100 % keeps being
        judged, window after window."""
        if self.rolled_back or self._final(policy):
            return self
        seen = replace(
            self,
            errors=self.errors + (not ok),
            latencies_ms=(*self.latencies_ms, latency_ms),
        )
        allowed = math.floor(policy.max_error_rate * policy.window)
        now = time.time() if now is None else now
        if seen.errors > allowed:
            why = (
                f"error rate {seen.errors}/{len(seen.latencies_ms)} requests exceeds "
                f"{policy.max_error_rate:.1%} of the {policy.window}-request window"
            )
            return seen._rollback(policy, "error_rate", why, now)
        if len(seen.latencies_ms) < policy.window:
            return seen
        p95 = _p95(seen.latencies_ms)
        if p95 > policy.max_p95_ms:
            why = (
                f"p95 latency {p95:.0f} ms exceeds {policy.max_p95_ms:.0f} ms over "
                f"{policy.window} requests"
            )
            return seen._rollback(policy, "p95_latency", why, now)
        verdict = f"{seen.errors} errors in {policy.window} requests, p95 {p95:.0f} ms"
        share = policy.stages[self.stage]
        if self.stage == len(policy.stages) - 1:
            held = f"held at {share:.0%} (the last stage): {verdict}"
            return CanaryState(self.stage, reason=held, last_move=self.last_move)
        reason = f"advanced {share:.0%} -> {policy.stages[self.stage + 1]:.0%}: {verdict}"
        advanced = CanaryState(stage=self.stage + 1, reason=reason)
        return replace(advanced, last_move=seen._move(policy, advanced, now))

    def _final(self, policy: CanaryConfig) -> bool:
        return policy.stages[self.stage] >= 1.0

    def _rollback(self, policy: CanaryConfig, cause: str, why: str, now: float) -> CanaryState:
        rolled = CanaryState(
            self.stage, rolled_back=True, reason=f"rolled back: {why}", cause=cause
        )
        return replace(rolled, last_move=self._move(policy, rolled, now))

    def _move(self, policy: CanaryConfig, to: CanaryState, now: float) -> CanaryMove:
        """The move from this state (its window holding the requests judged) to ``to``."""
        requests = len(self.latencies_ms)
        return CanaryMove(
            time=now,
            move="rolled_back" if to.rolled_back else "advanced",
            from_stage=self.stage + 1,
            from_share=self.share(policy),
            to_stage=to.stage + 1,
            to_share=to.share(policy),
            reason=to.reason,
            requests=requests,
            errors=self.errors,
            error_rate=round(self.errors / requests, 4) if requests else 0.0,
            p95_ms=round(_p95(self.latencies_ms), 3) if requests else 0.0,
        )


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
