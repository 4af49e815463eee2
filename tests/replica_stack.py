"""Several `llmops up` replicas of one app behind one port (tests/proxy.py), sharing their state
as replicas on separate machines do: the index in a Chroma server, the experiment (traffic,
rewards, the canary's ramp) in Redis, the request log in PostgreSQL, and the data dir (index
records). The app is indexed once with `llmops ingest`; the replicas start with `--no-ingest`.

What each replica says about the shared state (``Observed``) is what the consistency checks of
tests/integration/test_replicas.py and bench/replicas.py compare.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.proxy import HOST, running_proxy
from tests.up_server import free_port, llmops_up

EXPERIMENT = "replicas"
CANARY = "next"


def replica_sections(
    chroma_port: int, redis_url: str, request_log_url: str, canary_window: int
) -> dict[str, Any]:
    """The app config's sections that put its state outside the replicas: a canary experiment
    (``next`` retrieves 8 passages instead of 4) whose ramp advances every ``canary_window``
    canary requests (latency never rolls it back: the machine is shared)."""
    return {
        "store": {"type": "chroma", "host": HOST, "port": chroma_port},
        "experiment": {
            "name": EXPERIMENT,
            "strategy": "canary",
            "key": "x-user-id",
            "variants": {"stable": {}, CANARY: {"retrieval": {"top_k": 8}}},
            "canary": {
                "variant": CANARY,
                "stages": [0.1, 0.5, 1.0],
                "window": canary_window,
                "max_p95_ms": 600_000,
            },
            "redis_url": redis_url,
        },
        "monitoring": {"request_log": {"url": request_log_url}},
    }


def ingest(config: Path) -> None:
    """Index the app once, for every replica (`llmops ingest`)."""
    llmops = Path(sys.executable).parent / "llmops"
    done = subprocess.run([str(llmops), "ingest", str(config)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"llmops ingest failed:\n{done.stdout}\n{done.stderr}")


@dataclass(frozen=True)
class Replicas:
    port: int
    """The proxy's: the one port clients use."""
    bases: list[str]
    """Each replica's own base URL, to ask it directly."""


@contextmanager
def replicated(config: Path, replicas: int) -> Iterator[Replicas]:
    """``replicas`` servers of an indexed app behind the proxy; all stopped (by their process
    groups) when the block ends."""
    with ExitStack() as stack:
        bases = [stack.enter_context(llmops_up(config, "--no-ingest"))[0] for _ in range(replicas)]
        ports = [int(urlsplit(base).port or 0) for base in bases]
        yield Replicas(stack.enter_context(running_proxy(free_port(), ports)), bases)


@dataclass(frozen=True)
class Observed:
    """One replica's view: the queries it answered itself (its Prometheus counter), and the
    shared state as it reads it: the experiment report and the request log's totals per
    variant since the load began."""

    answered: int
    experiment: dict[str, Any]
    logged: dict[str, dict[str, float]]

    @property
    def variants(self) -> dict[str, Any]:
        """The experiment's shared figures (traffic, rewards, the canary's ramp), without the
        ``state`` section: that one is this replica's own link to Redis (outages, replays)."""
        return dict(self.experiment["variants"])

    @property
    def routed(self) -> dict[str, int]:
        """Requests per variant, as the experiment counted them."""
        return {name: v["requests"] for name, v in self.variants.items()}

    @property
    def canary(self) -> dict[str, Any]:
        return dict(self.variants[CANARY]["canary"])


def observe(base: str, since: float, key: str | None = None) -> Observed:
    """What the replica at ``base`` reports (``key``: an admin API key, when keys are on)."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        metrics = client.get("/metrics").raise_for_status().text
        experiment = client.get("/experiments").raise_for_status().json()
        until = time.time() + 1
        timeline = client.get(
            "/requests/timeline", params={"since": since, "until": until, "buckets": 1}
        ).raise_for_status()
    logged = {name: series[0] for name, series in timeline.json()["variants"].items()}
    return Observed(answered(metrics), experiment, logged)


def answered(metrics: str) -> int:
    """Queries answered by the process serving ``metrics`` (``llmops_queries_total``)."""
    return round(
        sum(
            sample.value
            for family in text_string_to_metric_families(metrics)
            if family.name == "llmops_queries"
            for sample in family.samples
            if sample.name == "llmops_queries_total"
        )
    )


def wait_logged(
    base: str, since: float, expected: int, key: str | None = None, timeout: float = 60
) -> int:
    """Wait until the request log (read through ``base``) holds ``expected`` rows since
    ``since`` (replicas write it in batches, about once a second); the rows it holds then."""
    deadline = time.time() + timeout
    while True:
        rows = sum(int(v["requests"]) for v in observe(base, since, key).logged.values())
        if rows >= expected or time.time() > deadline:
            return rows
        time.sleep(0.5)
