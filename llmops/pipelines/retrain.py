"""The retraining loop of a served model app (``monitoring.retrain``): a drift or performance
alert on the production version (or the schedule) starts the training job on the new data;
its candidate must pass the app's gates plus the retraining gates against production; a
candidate that does is rolled out by a canary ramp, promoted to production when every stage
was healthy and rolled back otherwise. Each step is logged with its reason, counted in
Prometheus and listed in ``GET /models``.

    retrainer = Retrainer(loaded, registry, metrics, start_canary=service.start_rollout)
    retrainer.alert(Alert("drift", 3, "drift in age over 500 rows"))   # from any thread
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from llmops.config import LoadedModelApp
from llmops.config.model_app import RetrainConfig
from llmops.errors import LLMOpsError
from llmops.models.registry import PRODUCTION, ModelRegistry
from llmops.monitoring.model_metrics import ModelMetrics
from llmops.pipelines.model_monitor import Alert
from llmops.pipelines.train import Training
from llmops.routing.canary import CanaryState

log = logging.getLogger("llmops.retrain")

HISTORY = 50
"""Steps kept for ``GET /models``."""


@dataclass(frozen=True)
class Step:
    time: float
    step: str  # started, skipped, failed, rejected, canary, promoted, rolled_back
    reason: str
    version: int | None = None


StartCanary = Callable[[int], Awaitable[None]]
"""Roll out version N as a canary beside production."""


def retraining_gates(loaded: LoadedModelApp, retrain: RetrainConfig) -> list[str]:
    """The app's gates plus the retraining gates (default: no worse than production by more
    than 0.01 in ROC AUC, or R² for regression)."""
    extra = retrain.gates
    if extra is None:
        metric = "r2" if loaded.app.task == "regression" else "roc_auc"
        extra = [f"{metric} >= {PRODUCTION} - 0.01"]
    return [*loaded.app.gates, *(g for g in extra if g not in loaded.app.gates)]


class Retrainer:
    def __init__(
        self,
        loaded: LoadedModelApp,
        registry: ModelRegistry,
        metrics: ModelMetrics,
        start_canary: StartCanary,
    ) -> None:
        retrain = loaded.app.monitoring.retrain
        if retrain is None:
            raise ValueError("the app has no monitoring.retrain section")
        self.config = retrain
        self.registry, self.metrics, self.start_canary = registry, metrics, start_canary
        app = loaded.app.model_copy(
            update={
                "data": retrain.data or loaded.app.data,
                "gates": retraining_gates(loaded, retrain),
            }
        )
        self.job = replace(loaded, app=app)
        self.name = app.model_name
        self.history: deque[Step] = deque(maxlen=HISTORY)
        self.running: asyncio.Task[None] | None = None
        self.canary_version: int | None = None
        self._last_start = -float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._schedule: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if "schedule" in self.config.triggers and self.config.every_s is not None:
            self._schedule = asyncio.create_task(self._every(self.config.every_s))

    async def close(self) -> None:
        for task in (self._schedule, self.running):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    # triggers --------------------------------------------------------------------------------
    def alert(self, alert: Alert) -> None:
        """An alert from any thread; starts a retraining when its kind is a trigger."""
        if alert.kind in self.config.triggers and self._loop is not None:
            reason = f"{alert.kind} alert on version {alert.version}: {alert.reason}"
            self._loop.call_soon_threadsafe(self.trigger, reason)

    def trigger(self, reason: str) -> bool:
        """Start a retraining now unless one is running, a canary is out, or the last one
        started less than ``cooldown_s`` ago; returns whether it started."""
        busy = self.running is not None and not self.running.done()
        if busy or self.canary_version is not None:
            return False
        since = time.monotonic() - self._last_start
        if since < self.config.cooldown_s:
            log.info("not retraining (%s): last run %.0f s ago, cooldown", reason, since)
            return False
        self._last_start = time.monotonic()
        self.running = asyncio.create_task(self._retrain(reason))
        return True

    async def _every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.trigger(f"schedule: every {seconds:g} s")

    # the job ---------------------------------------------------------------------------------
    async def _retrain(self, reason: str) -> None:
        self._record("started", reason)
        try:
            report = await asyncio.to_thread(Training(self.job).run)
        except LLMOpsError as exc:
            self._record("failed", f"training failed: {exc}")
            return
        except Exception as exc:
            log.exception("retraining crashed")
            self._record("failed", f"training crashed: {type(exc).__name__}: {exc}")
            return
        gates = "; ".join(g.describe() for g in report.gates)
        if not report.passed or report.version is None:
            self._record("rejected", f"the candidate failed its gates: {gates}")
            return
        number = report.version.version
        self.canary_version = number
        try:
            await self.start_canary(number)
        except Exception as exc:
            self.canary_version = None
            log.exception("starting the canary of version %d failed", number)
            self._record("failed", f"version {number}'s canary did not start: {exc}", number)
            return
        passed = f"version {number} passed its gates ({gates}); canary started"
        self._record("canary", passed, number)

    async def canary_moved(self, before: CanaryState, after: CanaryState, share: float) -> None:
        """The rollout's ramp moved: promote at 100 %, forget the candidate on a rollback."""
        number = self.canary_version
        if number is None:
            return
        if after.rolled_back:
            self.canary_version = None
            self._record("rolled_back", f"version {number} {after.reason}", number)
        elif share >= 1.0:
            try:
                await asyncio.to_thread(self.registry.promote, self.name, str(number))
            except LLMOpsError as exc:
                self._record("failed", f"promoting version {number} failed: {exc}", number)
                return
            finally:
                self.canary_version = None
            self._record("promoted", f"version {number} is production: {after.reason}", number)
        else:
            self._record("canary", f"version {number} {after.reason}", number)

    # record ----------------------------------------------------------------------------------
    def _record(self, step: str, reason: str, version: int | None = None) -> None:
        self.history.append(Step(time.time(), step, reason, version))
        self.metrics.retrain_step(step)
        log.warning("retraining %s: %s: %s", self.name, step, reason)

    def status(self) -> dict[str, Any]:
        return {
            "triggers": list(self.config.triggers),
            "running": self.running is not None and not self.running.done(),
            "canary_version": self.canary_version,
            "steps": [asdict(step) for step in reversed(self.history)],
        }
