"""Shadow runs: the record of one request answered by the serving variant and, in the
background, by the shadow variant, and the summary ``GET /experiments`` shows.

A run is a plain dict (stored as JSON): ``request_id``, ``time``, ``serving`` and ``shadow``
(variant names), ``serving_answer`` and ``shadow_answer``, ``serving_ms`` and ``shadow_ms``,
``error`` (why the shadow failed, or None), ``agreement`` (RAG: token F1 of the two answers, 1
when both abstain; models: the share of rows with the same label) and, for RAG runs,
``source_overlap`` (Jaccard of the chunks they were given).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from llmops.config.experiment import ShadowConfig
from llmops.routing.split import unit_point
from llmops.routing.state import RoutingState

log = logging.getLogger(__name__)
SHADOW_DRAIN_S = 5.0
"""How long closing waits for shadow runs still going."""
SAVE_BATCH = 32
"""Shadow runs saved together while several are running (the last one running saves)."""
Run = Callable[[], Awaitable[dict[str, Any]]]
"""One shadow run: returns its record (never raises: a failing shadow is recorded in
``error``)."""
Count = Callable[[str, float | None], None]
"""Told each run's outcome (ok, error, skipped) and agreement, for the metrics."""


class ShadowRunner:
    """Runs shadow jobs on copies of served requests, at most ``max_in_flight`` at once
    (copies beyond that are skipped and counted) and ``rate`` of the requests, and records
    each run in the experiment's state."""

    def __init__(
        self, config: ShadowConfig, state: RoutingState, experiment: str, salt: str, count: Count
    ) -> None:
        self.config, self.state, self.experiment = config, state, experiment
        self.salt, self.count = salt, count
        self.in_flight: set[asyncio.Task[None]] = set()
        self.unsaved: list[dict[str, Any]] = []

    def submit(self, request_id: str, run: Run) -> None:
        if unit_point(request_id, f"{self.salt}:shadow") >= self.config.rate:
            return
        if len(self.in_flight) >= self.config.max_in_flight:
            self.count("skipped", None)
            return
        task = asyncio.create_task(self._run(run))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _run(self, run: Run) -> None:
        record = await run()
        self.count("error" if record.get("error") else "ok", record.get("agreement"))
        self.unsaved.append(record)
        current = asyncio.current_task()
        last = all(task.done() or task is current for task in self.in_flight)
        if last or len(self.unsaved) >= SAVE_BATCH:  # while busy, save in batches
            await self._save()

    async def _save(self) -> None:
        """Save the unsaved runs, and those that finish meanwhile (their own check saw this
        save still running)."""
        while self.unsaved:
            runs, self.unsaved = self.unsaved, []
            try:
                await self.state.record_shadow(self.experiment, runs)
            except Exception:
                log.exception("could not record %d shadow runs", len(runs))

    async def close(self) -> None:
        """Let running shadow runs finish (a few seconds at most), then cancel the rest."""
        if self.in_flight:
            _, pending = await asyncio.wait(set(self.in_flight), timeout=SHADOW_DRAIN_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.unsaved:
            await self._save()


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts, error rate, mean agreement and median latencies over ``runs``."""
    ok = [r for r in runs if r.get("error") is None]
    return {
        "runs": len(runs),
        "errors": len(runs) - len(ok),
        "error_rate": round((len(runs) - len(ok)) / len(runs), 4) if runs else None,
        "mean_agreement": _mean([r["agreement"] for r in ok]),
        "mean_source_overlap": _mean([r["source_overlap"] for r in ok if "source_overlap" in r]),
        "serving_p50_ms": _median([r["serving_ms"] for r in runs]),
        "shadow_p50_ms": _median([r["shadow_ms"] for r in ok]),
    }


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None
