"""Two `llmops up` replicas behind one port against one replica behind the same proxy.

    python bench/replicas.py [--seconds 60] [--concurrency 32] [--warmup-s 10]
                             [--embedder bundled|hashing] [--workdir DIR] [--out results.json]

The stack of tests/integration/test_replicas.py (tests/replica_stack.py): the shipped user guide
(datasets/guide) indexed once by `llmops ingest` into a Chroma server, a canary experiment with
its state in Redis, the request log in PostgreSQL, the replicas started with `--no-ingest`
behind a round-robin TCP proxy (tests/proxy.py), all on 127.0.0.1. The embedder is the bundled
MiniLM (``--embedder hashing``: no model, to see the serving path alone); answers are
extractive (no LLM).

Each run (1 replica, then 2) gets a fresh stack. bench/load.py's keep-alive clients post
questions to ``/query`` through the proxy: ``--warmup-s``, then ``--concurrency`` clients for
``--seconds``. Then each replica is asked directly what it answered (its Prometheus counter)
and how it reads the shared state: the experiment's traffic per variant and the canary's
ramp (GET /experiments), the request log's rows per variant since the warm-up began
(GET /requests/timeline). Consistent means: the replicas' answers add up to the requests sent,
the experiment and the log each count every request, and both replicas read the same.

``--workdir`` keeps each run's files (the index, the replicas' logs ``up-PORT.log``). Prints
one JSON object (also written to ``--out``); exits 1 on any error or inconsistency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import GUIDE_QUESTIONS, ROOT, emit, machine, percentile, write_app
from load import Phase, drive

sys.path.insert(0, str(ROOT))  # the stack's helpers live with the tests that use them too

from tests.chroma_server import running_chroma
from tests.postgres import fresh_database
from tests.redis_server import running_redis
from tests.replica_stack import (
    Observed,
    ingest,
    observe,
    replica_sections,
    replicated,
    wait_logged,
)

EMBEDDERS = {
    "bundled": {"type": "sentence_transformers", "model": "bundled"},
    "hashing": {"type": "hashing"},
}
CANARY_WINDOW = 100
APP = "replicas"


def agreement(views: list[Observed], sent: int) -> dict[str, Any]:
    """What the replicas report about the ``sent`` requests, and whether it all adds up."""
    first = views[0]
    logged = {name: int(v["requests"]) for name, v in first.logged.items()}
    checks = {
        "answers_add_up": sum(v.answered for v in views) == sent,
        "experiment_counts_all": sum(first.routed.values()) == sent,
        "log_counts_all": sum(logged.values()) == sent,
        "log_matches_experiment": logged == first.routed,
        "replicas_read_same_experiment": all(v.variants == first.variants for v in views),
        "replicas_read_same_log": all(v.logged == first.logged for v in views),
    }
    return {
        "consistent": all(checks.values()),
        "checks": checks,
        "answered_per_replica": [v.answered for v in views],
        "experiment_requests": first.routed,
        "log_requests": logged,
        "canary": {k: first.canary[k] for k in ("stage", "share", "rolled_back", "reason")},
        "routing_state_per_replica": [v.experiment["state"] for v in views],
    }


def summary(phase: Phase) -> dict[str, Any]:
    latencies = [ms for _, ms in phase.results]
    return {**phase.summary(), "p95_ms": round(percentile(latencies, 95), 1)}


async def load(port: int, args: argparse.Namespace) -> tuple[Phase, Phase]:
    """The warm-up, then the measured load, through the proxy."""
    warmup, measured = Phase("/query"), Phase("/query")
    await drive(port, warmup, GUIDE_QUESTIONS, args.concurrency, args.warmup_s)
    await drive(port, measured, GUIDE_QUESTIONS, args.concurrency, args.seconds)
    return warmup, measured


def run(replicas: int, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh stack with ``replicas`` servers: the load, then what each replica reports."""
    source = (ROOT / "datasets" / "guide").resolve()
    with (
        running_redis() as redis_url,
        running_chroma(folder / "chroma") as chroma,
        fresh_database() as postgres_url,
    ):
        sections = replica_sections(chroma, redis_url, postgres_url, CANARY_WINDOW)
        embedder = EMBEDDERS[args.embedder]
        config = write_app(folder, source, ["**/*.md"], name=APP, embedder=embedder, **sections)
        started = time.perf_counter()
        ingest(config)
        ingest_s = time.perf_counter() - started
        since = time.time()
        with replicated(config, replicas) as stack:
            warmup, measured = asyncio.run(load(stack.port, args))
            results = warmup.results + measured.results
            logged = wait_logged(stack.bases[0], since, len(results))
            views = [observe(base, since) for base in stack.bases]
    return {
        "replicas": replicas,
        "ingest_s": round(ingest_s, 1),
        "warmup_requests": len(warmup.results),
        "sent": len(results),
        "errors": sum(1 for status, _ in results if status != 200),
        "logged_rows": logged,
        **summary(measured),
        **agreement(views, len(results)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--embedder", choices=sorted(EMBEDDERS), default="bundled")
    parser.add_argument("--workdir", type=Path, default=None, help="keep each run's files here")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    runs = []
    for replicas in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            folder = (args.workdir or Path(tmp)).resolve() / f"replicas-{replicas}"
            folder.mkdir(parents=True, exist_ok=True)
            runs.append(run(replicas, folder, args))
    one, two = runs
    result = {
        "benchmark": "replicas",
        "machine": machine(),
        "load_average_before_after": [
            [round(x, 2) for x in avg] for avg in (load_before, os.getloadavg())
        ],
        "embedder": args.embedder,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "runs": runs,
        "throughput_ratio_2_vs_1": round(two["throughput_rps"] / one["throughput_rps"], 2),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    emit(result)
    if any(r["errors"] or not r["consistent"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
