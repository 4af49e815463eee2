"""Shadow runs: the record of one request answered by the serving variant and, in the
background, by the shadow variant, and the summary ``GET /experiments`` shows.

A run is a plain dict (stored as JSON): ``request_id``, ``time``, ``serving`` and ``shadow``
(variant names), ``serving_answer`` and ``shadow_answer``, ``serving_ms`` and ``shadow_ms``,
``error`` (why the shadow failed, or None), ``agreement`` (token F1 of the two answers, 1 when
both abstain) and ``source_overlap`` (Jaccard of the chunks they were given).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts, error rate, mean agreement and median latencies over ``runs``."""
    ok = [r for r in runs if r.get("error") is None]
    return {
        "runs": len(runs),
        "errors": len(runs) - len(ok),
        "error_rate": round((len(runs) - len(ok)) / len(runs), 4) if runs else None,
        "mean_agreement": _mean([r["agreement"] for r in ok]),
        "mean_source_overlap": _mean([r["source_overlap"] for r in ok]),
        "serving_p50_ms": _median([r["serving_ms"] for r in runs]),
        "shadow_p50_ms": _median([r["shadow_ms"] for r in ok]),
    }


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None
