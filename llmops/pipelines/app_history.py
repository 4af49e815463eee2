"""What a RAG app has done, for its operators (``RAG.history``): the request log filtered and
over time, the drift checks kept, the eval runs, and the training set exported from rated
requests. Each read opens the app first (its record table and monitor, no model)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmops.build import Components
from llmops.errors import InvalidRequest
from llmops.evaluation.runs import EvalRuns
from llmops.monitoring.monitor import Monitor
from llmops.monitoring.request_filter import RequestFilter, newest, timeline
from llmops.monitoring.request_log import RequestLog
from llmops.pipelines.training_set import ExportReport, export_from_log, index_passages


class AppHistory:
    def __init__(
        self,
        monitor: Monitor,
        components: Components,
        runs_dir: Path,
        runs_label: str,
        open_app: Callable[[], None],
    ) -> None:
        self.monitor, self.components = monitor, components
        self.runs_dir, self.runs_label = runs_dir, runs_label
        self._open = open_app

    def requests(self, where: RequestFilter | None = None) -> list[dict[str, Any]]:
        """The newest logged requests that ``where`` accepts, newest first (what the console's
        request page and ``GET /requests`` show); raises InvalidRequest when the log is off."""
        where = where or RequestFilter()
        rows = self._request_log().iter_rows(where.since, where.until)
        return newest(rows, where)

    def timeline(self, since: float, until: float, buckets: int = 60) -> dict[str, Any]:
        """Requests, ratings, rewards and latency per variant in ``buckets`` time buckets
        between ``since`` and ``until`` (epoch seconds): the experiment over time."""
        return timeline(self._request_log().iter_rows(since, until), since, until, buckets)

    def drift(self) -> dict[str, Any]:
        """The drift checks (``GET /drift``): the settings, the checks kept across restarts
        (the newest, oldest first) with every signal's p-value, its level and the alerts."""
        self._open()
        drift = self.monitor.drift
        if drift is None:
            return {"enabled": False, "checks": 0, "kept": 0, "history": []}
        return drift.report()

    @property
    def eval_runs(self) -> EvalRuns:
        """The app's eval runs (``evaluation.runs_dir``): listed, read and compared."""
        return EvalRuns(self.runs_dir, self.runs_label)

    def export_training_set(
        self,
        out: Path,
        *,
        min_feedback: float = 1.0,
        since: float | None = None,
        include_context: bool = True,
    ) -> ExportReport:
        """Chat JSONL for ``llmops finetune`` from the answered, positively rated requests of
        the request log, with the retrieved passages as ``context`` (see
        ``llmops.pipelines.training_set``)."""
        log = self._request_log()
        lookup = index_passages(self.components) if include_context else None
        return export_from_log(
            log,
            out,
            min_feedback=min_feedback,
            since=since,
            include_context=include_context,
            passages=lookup,
        )

    def _request_log(self) -> RequestLog:
        self._open()
        if self.monitor.request_log is None:
            raise InvalidRequest("the request log is off (monitoring.request_log.enabled: false)")
        return self.monitor.request_log
