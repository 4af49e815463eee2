"""Whether an app config may be served by several processes at once, and if not, why and how
to fix it. One rule for both ways of scaling out:

- ``llmops up --workers N`` (processes on one machine, one data dir on a local disk): SQLite
  and the embedded Chroma are shared safely, so only ingestion matters: it runs once, before
  the workers start, and ``POST /ingest`` is refused while they serve.
- replicas (pods or containers on several machines): besides ingesting once (a one-off job;
  the replicas start with ``--no-ingest``), every piece of state must live in a shared service,
  because each replica's data dir is its own.

Each check is a small function of the config; ``problems`` runs those of a scope.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from llmops.config.schema import AppConfig


class Scope(Enum):
    """Where the processes serving one app run."""

    HOST = "worker processes on one machine"
    CLUSTER = "replicas on several machines"


@dataclass(frozen=True)
class Problem:
    """One reason a config cannot run as several processes, and the fix."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}; fix: {self.fix}"


Check = Callable[[AppConfig], "Problem | None"]


def embedded_chroma(app: AppConfig) -> Problem | None:
    store = app.store
    if store.type != "chroma" or store.settings().get("host"):
        return None
    return Problem(
        "the vectors are in an embedded Chroma (a folder in each replica's data dir)",
        "run a Chroma server (`chroma run --path DIR --port 8000`) and point the store at it: "
        "store: {type: chroma, host: chroma, port: 8000}",
    )


def sqlite_routing_state(app: AppConfig) -> Problem | None:
    experiment = app.experiment
    if experiment is None or experiment.redis_url:
        return None
    return Problem(
        f"experiment '{experiment.name}' keeps its assignments and rewards in SQLite in each "
        "replica's data dir",
        "share them through Redis: experiment.redis_url: ${REDIS_URL} (redis://redis:6379/0)",
    )


def per_process_limits(app: AppConfig) -> Problem | None:
    auth = app.server.auth
    limits = auth.limits
    has_limits = any(
        v is not None
        for v in (limits.requests_per_minute, limits.concurrent, limits.tokens_per_day)
    )
    if not has_limits or auth.limiter == "redis":
        return None
    return Problem(
        "server.auth rate limits are counted per process (limiter: memory), so N replicas "
        "would allow N times the budget",
        "count them in Redis: server.auth.limiter: redis, server.auth.redis_url: ${REDIS_URL}",
    )


def sqlite_request_log(app: AppConfig) -> Problem | None:
    if not app.monitoring.request_log.enabled:
        return None
    return Problem(
        "the request log is a SQLite file in each replica's data dir (llmops has no PostgreSQL "
        "request log yet), so each replica would keep a part of it and drift checks would see "
        "a part of the traffic",
        "turn it off for a scaled-out deployment: monitoring.request_log.enabled: false "
        "(GET /metrics, scraped by Prometheus, still counts every request)",
    )


CHECKS: dict[Scope, tuple[Check, ...]] = {
    Scope.HOST: (),  # one disk: SQLite and the embedded Chroma are shared by the processes
    Scope.CLUSTER: (embedded_chroma, sqlite_routing_state, per_process_limits, sqlite_request_log),
}
INGEST_ONCE = (
    "ingestion runs once before the processes serve (a one-off Job, or the first process of "
    "`llmops up --workers N`), and POST /ingest is refused while several serve"
)


def problems(app: AppConfig, scope: Scope) -> list[Problem]:
    """Why ``app`` cannot be served by several processes in ``scope`` (empty: it can, with
    ingestion run once: see ``INGEST_ONCE``)."""
    return [found for check in CHECKS[scope] if (found := check(app)) is not None]


def refusal(app_name: str, processes: int, scope: Scope, found: list[Problem]) -> str:
    """The message refusing to run ``processes`` copies of the app, one line per problem."""
    lines = [f"refusing {processes} {scope.value} for app '{app_name}':"]
    lines += [f"  - {problem}" for problem in found]
    lines.append("or keep one replica (--replicas 1 --max-replicas 1).")
    return "\n".join(lines)
