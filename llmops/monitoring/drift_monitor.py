"""Background drift checks: the last ``window`` queries against the reference, every N
requests or M minutes, on one daemon thread. A detection sets the Prometheus gauges, logs a
warning and POSTs a JSON alert to the webhook (once per change from "no drift" to "drift").
Each check is kept in the app's ``DriftHistory`` (across restarts)."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from llmops.config.monitoring import DriftConfig
from llmops.db import RETRYABLE
from llmops.monitoring.drift import DriftResult, Window, compare
from llmops.monitoring.drift_history import DriftHistory
from llmops.monitoring.events import SIGNALS, QueryEvent

log = logging.getLogger("llmops.drift")

EmbedFn = Callable[[Sequence[str]], np.ndarray]
ResultFn = Callable[[DriftResult], None]
MIN_CURRENT = 20
REPORT_CHECKS = 500
"""The newest kept checks ``report`` returns (the console's drift page)."""


def reference_window(
    questions: Sequence[str],
    signals: Mapping[str, Sequence[float]] | None = None,
    embed: EmbedFn | None = None,
) -> Window:
    """A reference from questions (an eval dataset) and, from a period of the log, the
    numeric signals too."""
    values = {k: np.asarray(v, dtype=np.float64) for k, v in (signals or {}).items()}
    values.setdefault("query_chars", np.array([len(q) for q in questions], dtype=np.float64))
    vectors = embed(list(questions)) if embed is not None and questions else None
    return Window(values, None if vectors is None else np.asarray(vectors))


class DriftMonitor:
    """Keeps the current window, runs checks in the background and keeps each in ``history``."""

    def __init__(
        self,
        config: DriftConfig,
        load_reference: Callable[[], Window],
        history: DriftHistory,
        embed: EmbedFn | None = None,
        on_result: ResultFn | None = None,
        pipeline: str = "",
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self._load_reference = load_reference
        self._reference: Window | None = None
        self.embed = embed
        self.on_result = on_result
        self._current: deque[QueryEvent] = deque(maxlen=config.window)
        self._seen = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: DriftResult | None = None
        self.checks = 0  # made by this process
        self.history = history

    def start(self) -> None:
        self.history.open()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="drift-check", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        self.history.close()

    def observe(self, event: QueryEvent) -> None:
        """Called per query: a deque append, and every N requests a wake-up of the checker."""
        self._current.append(event)
        self._seen += 1
        every = self.config.every_requests
        if every and self._seen % every == 0:
            self._wake.set()

    def _loop(self) -> None:
        minutes = self.config.every_minutes
        timeout = minutes * 60 if minutes else None
        while not self._stop.is_set():
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.check()
            except Exception:  # a failed check must not end the checker
                log.exception("drift check failed")

    def reference(self) -> Window:
        if self._reference is None:
            self._reference = self._load_reference()
        return self._reference

    def current(self) -> Window:
        samples = list(self._current)
        per_sample = [s.signals(self.config.source_threshold) for s in samples]
        signals = {n: np.array([values[n] for values in per_sample]) for n in SIGNALS}
        vectors = [s.vector for s in samples]
        if any(v is None for v in vectors) and self.embed is not None:
            missing = [i for i, v in enumerate(vectors) if v is None]
            embedded = self.embed([samples[i].question for i in missing])
            for i, vector in zip(missing, embedded, strict=True):
                vectors[i] = vector
        usable = samples and all(v is not None for v in vectors)
        return Window(signals, np.vstack(vectors) if usable else None)

    def check(self) -> DriftResult | None:
        """Compare now (None while the current window is too small)."""
        if len(self._current) < MIN_CURRENT:
            return None
        result = compare(
            self.reference(), self.current(), self.config.alpha, self.config.permutations
        )
        was = self.last is not None and self.last.detected
        alert = result.detected and not was  # a change to "drift": the webhook's moment
        self._keep({"time": time.time(), "alert": alert, **result.to_dict()})
        self.last, self.checks = result, self.checks + 1
        if self.on_result is not None:
            self.on_result(result)
        if result.detected:
            log.warning(
                "%s: drift detected in %s (current %d vs reference %d queries): p-values %s",
                self.pipeline or "app", ", ".join(result.drifted), result.current_size,
                result.reference_size,
                json.dumps({n: round(result.signals[n].p_value, 6) for n in result.drifted}),
            )  # fmt: skip
            if not was and self.config.webhook_url:
                send_alert(self.config.webhook_url, result, self.pipeline)
        return result

    def report(self, limit: int = REPORT_CHECKS) -> dict[str, Any]:
        """The settings, the checks this process made, how many are kept, and the newest
        ``limit`` kept checks (oldest first, across restarts)."""
        config = self.config
        settings: dict[str, float | None] = {"window": config.window, "alpha": config.alpha}
        settings |= {"every_requests": config.every_requests, "every_minutes": config.every_minutes}
        return {
            "enabled": True,
            "checks": self.checks,
            "kept": self.history.count(),
            "settings": settings,
            "history": self.history.recent(limit),
        }

    def _keep(self, check: dict[str, Any]) -> None:
        """Add the check to the history; a storage fault loses this check's row only."""
        try:
            self.history.add(check)
        except RETRYABLE as exc:
            log.error("%s: drift check not kept in the history: %s", self.pipeline or "app", exc)


def send_alert(url: str, result: DriftResult, pipeline: str = "", timeout: float = 5.0) -> bool:
    """POST the result as JSON; failures are logged, never raised."""
    alert = {"event": "drift_detected", "pipeline": pipeline, "time": time.time()}
    body = json.dumps({**alert, **result.to_dict()})
    request = urllib.request.Request(
        url, body.encode(), {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except OSError as exc:
        log.error("drift webhook %s failed: %s", url, exc)
        return False
