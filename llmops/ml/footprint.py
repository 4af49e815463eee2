"""What a fitted model costs to run: prediction latency per row (single rows, as ``/predict``
sees them, and per row of a 256-row batch, as batch jobs and micro-batched requests see
them) and its size (bytes of the pickled Pipeline).

These are figures of the machine they were measured on, so they are kept apart from the test
metrics: logged to the MLflow run under their own names, tagged on the version as
``runtime.<name>`` (so a gate can compare with production's), and read by a gate only when
it names them (``latency_ms_per_row <= 5``).
"""

from __future__ import annotations

import pickle
import statistics
import time
from collections.abc import Mapping
from typing import Any

SINGLE_ROW_CALLS = 50  # rows predicted one at a time (after one warm-up call)
BATCH_ROWS = 256
BATCH_CALLS = 5
RUNTIME_TAG = "runtime."
NAMES = ("latency_ms_per_row", "latency_ms_per_row_batch", "model_bytes")


def latency_and_size(model: Any, rows: Any) -> dict[str, float]:
    """``latency_ms_per_row`` (median over single-row ``predict`` calls),
    ``latency_ms_per_row_batch`` (median time of a 256-row call, divided by 256) and
    ``model_bytes`` of ``model`` on ``rows`` (a DataFrame of inputs, e.g. the test rows)."""
    if len(rows) == 0:
        raise ValueError("latency is measured on rows; got none")
    return {
        "latency_ms_per_row": _single_row_ms(model, rows),
        "latency_ms_per_row_batch": _batch_row_ms(model, rows),
        "model_bytes": float(len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))),
    }


def _single_row_ms(model: Any, rows: Any) -> float:
    model.predict(rows.iloc[:1])  # the first call pays for lazy set-up, not prediction
    times = []
    for i in range(min(SINGLE_ROW_CALLS, len(rows))):
        row = rows.iloc[i : i + 1]
        started = time.perf_counter()
        model.predict(row)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _batch_row_ms(model: Any, rows: Any) -> float:
    # fewer test rows than a batch: the same rows again, so the batch is always 256 rows
    batch = rows.iloc[[i % len(rows) for i in range(BATCH_ROWS)]]
    model.predict(batch)
    times = []
    for _ in range(BATCH_CALLS):
        started = time.perf_counter()
        model.predict(batch)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times) / BATCH_ROWS


def runtime_tags(runtime: Mapping[str, float]) -> dict[str, str]:
    """The figures as version tags: ``runtime.latency_ms_per_row`` = ``"0.83"``, ..."""
    return {f"{RUNTIME_TAG}{name}": str(float(value)) for name, value in runtime.items()}


def runtime_from_tags(tags: Mapping[str, str]) -> dict[str, float]:
    """The figures back from a version's tags (a baseline for gates); others are skipped."""
    found = {}
    for key, value in tags.items():
        if key.startswith(RUNTIME_TAG):
            try:
                found[key.removeprefix(RUNTIME_TAG)] = float(value)
            except ValueError:  # a tag anyone can set by hand
                continue
    return found
