"""Whether an app config may be served by several processes at once, and if not, why and how
to fix it. One rule for both ways of scaling out:

- ``llmops up --workers N`` (processes on one machine, one data dir on a local disk): SQLite
  and the embedded Chroma are shared safely, and ingestion runs once, before the workers
  start (``POST /ingest`` is refused while they serve); what each process keeps in its own
  memory is not shared: the rate limits of ``limiter: memory``.
- replicas (pods or containers on several machines): besides ingesting once (a one-off job;
  the replicas start with ``--no-ingest``), every piece of state must live in a shared service,
  because each replica's data dir is its own.

A model app (``kind: model``) has its own state: the prediction log that labels are joined
to, its routing state, and a retraining loop that would run in every replica.

Each check is a small function of the config; ``problems`` runs those of a scope and kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from llmops.config.auth import AuthConfig
from llmops.config.model_app import ModelAppConfig
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
ModelCheck = Callable[[ModelAppConfig], "Problem | None"]


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
    return _memory_limits(app.server.auth, "server.auth")


def _memory_limits(auth: AuthConfig, section: str) -> Problem | None:
    limits = auth.limits
    has_limits = any(
        v is not None
        for v in (limits.requests_per_minute, limits.concurrent, limits.tokens_per_day)
    )
    if not has_limits or auth.limiter == "redis":
        return None
    return Problem(
        f"{section} rate limits are counted in each process's memory (limiter: memory), so "
        "N processes would allow N times the budget",
        f"count them in Redis: {section}.limiter: redis, {section}.redis_url: ${{REDIS_URL}}",
    )


def sqlite_request_log(app: AppConfig) -> Problem | None:
    request_log = app.monitoring.request_log
    if not request_log.enabled or request_log.url:
        return None
    return Problem(
        "the request log is a SQLite file in each replica's data dir, so each replica would "
        "keep a part of it (and of the feedback) and drift checks would see a part of the "
        "traffic",
        "keep it in PostgreSQL: monitoring.request_log.url: ${REQUEST_LOG_URL} "
        "(postgresql://user:${PASSWORD}@postgres:5432/llmops), or turn it off: "
        "monitoring.request_log.enabled: false",
    )


def model_limits(app: ModelAppConfig) -> Problem | None:
    return _memory_limits(app.serving.auth, "serving.auth")


def model_routing_state(app: ModelAppConfig) -> Problem | None:
    routing = app.routing
    if routing is None or routing.redis_url:
        return None
    return Problem(
        f"routing '{routing.name}' keeps its assignments and rewards in SQLite in each "
        "replica's data dir",
        "share them through Redis: routing.redis_url: ${REDIS_URL}",
    )


def prediction_log(app: ModelAppConfig) -> Problem | None:
    if not app.monitoring.predictions.enabled:
        return None
    return Problem(
        "the prediction log (that POST /labels joins labels to, and live metrics and drift "
        "read) is a SQLite file in each replica's data dir, so a label would miss the rows "
        "another replica predicted",
        "serve one replica, or turn it off: monitoring.predictions.enabled: false",
    )


def retraining_loop(app: ModelAppConfig) -> Problem | None:
    if app.monitoring.retrain is None:
        return None
    return Problem(
        "monitoring.retrain runs the retraining loop in every serving process, so each "
        "replica would retrain and register its own version",
        "retrain from one place (a scheduled `llmops train` job) and leave monitoring.retrain "
        "out of the served config",
    )


CHECKS: dict[Scope, tuple[Check, ...]] = {
    # one disk: SQLite and the embedded Chroma are shared by the processes, memory is not
    Scope.HOST: (per_process_limits,),
    Scope.CLUSTER: (embedded_chroma, sqlite_routing_state, per_process_limits, sqlite_request_log),
}
ONE_PROCESS = {
    Scope.HOST: "run one worker (--workers 1, server.workers: 1)",
    Scope.CLUSTER: "keep one replica (--replicas 1 --max-replicas 1)",
}
INGEST_ONCE = (
    "ingestion runs once before the processes serve (a one-off Job, or the first process of "
    "`llmops up --workers N`), and POST /ingest is refused while several serve"
)


MODEL_CHECKS: dict[Scope, tuple[ModelCheck, ...]] = {
    Scope.HOST: (model_limits,),
    Scope.CLUSTER: (model_limits, model_routing_state, prediction_log, retraining_loop),
}


def problems(app: AppConfig | ModelAppConfig, scope: Scope) -> list[Problem]:
    """Why ``app`` cannot be served by several processes in ``scope`` (empty: it can, with
    a RAG app's ingestion run once: see ``INGEST_ONCE``)."""
    if isinstance(app, ModelAppConfig):
        return [found for check in MODEL_CHECKS[scope] if (found := check(app)) is not None]
    return [found for check in CHECKS[scope] if (found := check(app)) is not None]


def refusal(app_name: str, processes: int, scope: Scope, found: list[Problem]) -> str:
    """The message refusing to run ``processes`` copies of the app, one line per problem."""
    lines = [f"refusing {processes} {scope.value} for app '{app_name}':"]
    lines += [f"  - {problem}" for problem in found]
    lines.append(f"or {ONE_PROCESS[scope]}.")
    return "\n".join(lines)
