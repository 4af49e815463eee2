"""Drift checks of a served model, per version: each version's newest served rows (features
and its prediction) against that version's reference (rows it was trained on, predicted by
it), every ``check_every`` rows, on one background thread, so ``/predict`` only appends.

    monitor = TableDriftMonitor(config, numeric=["age"], categorical=["sex"], on_result=alert)
    monitor.set_reference(3, reference_frame)      # features + a "prediction" column
    monitor.observe(3, rows, predictions)
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llmops.config.model_app import ModelDriftConfig
from llmops.deps import require
from llmops.monitoring.table_drift import TableDrift, compare_tables

log = logging.getLogger("llmops.drift")

PREDICTION = "prediction"
"""The column of a version's predictions, checked beside the features (prediction drift)."""
ResultFn = Callable[[int, TableDrift], None]


class TableDriftMonitor:
    def __init__(
        self,
        config: ModelDriftConfig,
        numeric: Sequence[str],
        categorical: Sequence[str],
        on_result: ResultFn,
        numeric_prediction: bool = True,
    ) -> None:
        """``numeric_prediction``: predictions are scores or values (KS); else class labels
        (chi-squared)."""
        self.config = config
        self.numeric = [*numeric, *([PREDICTION] if numeric_prediction else [])]
        self.categorical = [*categorical, *([] if numeric_prediction else [PREDICTION])]
        self.on_result = on_result
        self._references: dict[int, Any] = {}
        self._windows: dict[int, deque[dict[str, Any]]] = {}
        self._unchecked: dict[int, int] = {}
        self._latest: dict[int, TableDrift] = {}
        self._checked_at: dict[int, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="model-drift", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout=30)
            self._thread = None

    # feeding ---------------------------------------------------------------------------------
    def has_reference(self, version: int) -> bool:
        return version in self._references

    def set_reference(self, version: int, frame: Any) -> None:
        """``frame``: the version's training rows with its predictions in ``prediction``."""
        with self._lock:
            self._references[version] = frame

    def observe(
        self, version: int, rows: Sequence[Mapping[str, Any]], predictions: Sequence[Any]
    ) -> None:
        """Served rows of ``version`` and what it predicted for them."""
        if version not in self._references:
            return
        with self._lock:
            window = self._windows.setdefault(version, deque(maxlen=self.config.window))
            for row, prediction in zip(rows, predictions, strict=True):
                window.append({**row, PREDICTION: prediction})
            due = self._unchecked.get(version, 0) + len(rows)
            self._unchecked[version] = due
        if due >= self.config.check_every:
            self._wake.set()

    # reading ---------------------------------------------------------------------------------
    def latest(self, version: int) -> TableDrift | None:
        return self._latest.get(version)

    def windows(self, version: int) -> tuple[Any, Any]:
        """The reference and the current window of ``version`` as DataFrames (for a report)."""
        pandas = require("pandas", "monitor")
        with self._lock:
            reference = self._references.get(version)
            rows = list(self._windows.get(version, ()))
        if reference is None:
            raise LookupError(f"version {version} has no drift reference")
        columns = [*self.numeric, *self.categorical]
        return reference[columns], pandas.DataFrame.from_records(rows, columns=columns)

    def check(self, version: int) -> TableDrift:
        """Compare ``version``'s window now (the background thread does this on its own)."""
        reference, current = self.windows(version)
        result = compare_tables(
            reference,
            current,
            self.numeric,
            self.categorical,
            alpha=self.config.alpha,
            min_psi=self.config.min_psi,
            min_rows=self.config.min_rows,
        )
        self._latest[version] = result
        return result

    def _loop(self) -> None:
        """Check each version with ``check_every`` new rows, at most every ``min_interval_s``
        (a version due too soon waits for the interval, then is checked)."""
        while not self._stopping:
            self._wake.wait(timeout=self.config.min_interval_s or None)
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                due = [
                    version
                    for version, rows in self._unchecked.items()
                    if rows >= self.config.check_every
                    and now - self._checked_at.get(version, -math.inf) >= self.config.min_interval_s
                ]
                for version in due:
                    self._unchecked[version] = 0
                    self._checked_at[version] = now
            for version in due:
                try:
                    result = self.check(version)
                except Exception:  # a failed check must not end the checks
                    log.exception("drift check of version %d failed", version)
                    continue
                if result.judged:
                    self.on_result(version, result)
