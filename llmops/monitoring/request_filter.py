"""Reading the request log for people: the newest rows that pass a filter (time, variant,
feedback, latency, abstained), and the rows counted per time bucket and variant (traffic and
rewards over time). Both read the rows the log yields (``RequestLog.iter_rows``), so they work
on whatever store holds them."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

FeedbackFilter = Literal["any", "rated", "unrated", "up", "down"]
MAX_ROWS = 1000
MAX_BUCKETS = 500


@dataclass(frozen=True)
class RequestFilter:
    """Which logged requests to show. Times are epoch seconds (``since <= time < until``);
    ``feedback``: rated or not, ``up`` (a reward above 0.5) or ``down`` (at most 0.5);
    ``limit``: how many of the newest matching rows (at most ``MAX_ROWS``)."""

    since: float | None = None
    until: float | None = None
    variant: str | None = None
    feedback: FeedbackFilter = "any"
    min_latency_ms: float | None = None
    max_latency_ms: float | None = None
    abstained: bool | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_ROWS:
            raise ValueError(f"limit must be between 1 and {MAX_ROWS}, not {self.limit}")

    def accepts(self, row: Mapping[str, Any]) -> bool:
        """True when ``row`` (a request log row) passes every condition but the time bounds,
        which the log applies when it reads."""
        if self.variant is not None and row.get("variant") != self.variant:
            return False
        if self.abstained is not None and bool(row.get("abstained")) != self.abstained:
            return False
        latency = row.get("latency_ms") or 0.0
        if self.min_latency_ms is not None and latency < self.min_latency_ms:
            return False
        if self.max_latency_ms is not None and latency > self.max_latency_ms:
            return False
        return _feedback_matches(self.feedback, row.get("feedback"))


def _feedback_matches(wanted: FeedbackFilter, feedback: float | None) -> bool:
    if wanted == "any":
        return True
    if wanted == "unrated":
        return feedback is None
    if feedback is None:
        return False
    return wanted == "rated" or (wanted == "up") == (feedback > 0.5)


def newest(rows: Iterable[Mapping[str, Any]], where: RequestFilter) -> list[dict[str, Any]]:
    """The newest ``where.limit`` rows of ``rows`` (oldest first, as the log yields them)
    that ``where`` accepts, newest first. Memory is bounded by the limit."""
    kept: deque[dict[str, Any]] = deque(maxlen=where.limit)
    for row in rows:
        if where.accepts(row):
            kept.append(dict(row))
    return list(reversed(kept))


def timeline(
    rows: Iterable[Mapping[str, Any]], since: float, until: float, buckets: int = 60
) -> dict[str, Any]:
    """``rows`` (oldest first, within ``since``..``until``) counted in ``buckets`` equal time
    buckets per variant: requests, rated requests, the sum of their rewards, abstentions and
    the mean latency. Buckets without requests are listed too, so a plot's x axis is time."""
    if not 1 <= buckets <= MAX_BUCKETS:
        raise ValueError(f"buckets must be between 1 and {MAX_BUCKETS}, not {buckets}")
    if until <= since:
        raise ValueError(f"until ({until}) must come after since ({since})")
    width = (until - since) / buckets
    counts: dict[str, list[dict[str, float]]] = {}
    for row in rows:
        index = min(buckets - 1, max(0, math.floor((row["time"] - since) / width)))
        variant = row.get("variant") or "default"
        series = counts.setdefault(variant, [_empty() for _ in range(buckets)])
        _count(series[index], row)
    variants = {name: [_finish(b) for b in series] for name, series in sorted(counts.items())}
    starts = [since + i * width for i in range(buckets)]
    return {
        "since": since,
        "until": until,
        "bucket_s": width,
        "starts": starts,
        "variants": variants,
    }


def _empty() -> dict[str, float]:
    return {"requests": 0, "rated": 0, "reward_sum": 0.0, "abstained": 0, "latency_sum": 0.0}


def _count(bucket: dict[str, float], row: Mapping[str, Any]) -> None:
    bucket["requests"] += 1
    bucket["abstained"] += int(bool(row.get("abstained")))
    bucket["latency_sum"] += row.get("latency_ms") or 0.0
    if row.get("feedback") is not None:
        bucket["rated"] += 1
        bucket["reward_sum"] += row["feedback"]


def _finish(bucket: dict[str, float]) -> dict[str, float | None]:
    requests, rated = bucket["requests"], bucket["rated"]
    return {
        "requests": int(requests),
        "rated": int(rated),
        "reward_sum": bucket["reward_sum"],
        "mean_reward": bucket["reward_sum"] / rated if rated else None,
        "abstained": int(bucket["abstained"]),
        "mean_latency_ms": bucket["latency_sum"] / requests if requests else None,
    }
