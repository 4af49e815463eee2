"""What the monitoring hooks cost on /query: p50 with and without them, in one process.

    python bench/monitoring.py [--rounds 7] [--requests 60]

Two apps over the shipped user guide (datasets/guide, bundled MiniLM, extractive answers)
differ only in ``monitoring``: all on (metrics + HTTP middleware, request log, drift window
with a reference) or all off. Both are driven through FastAPI's in-process TestClient, each
question sent to both apps back to back (alternating which goes first), so background load
on the machine hits both alike; we report the median over rounds of each round's p50.
Then the hook set alone (``Monitor.observe`` plus the HTTP metrics of one request) is timed
over 20,000 calls, for a figure without the noise of a whole query.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import GUIDE_QUESTIONS as QUESTIONS
from common import ROOT, emit, machine, median, percentile, write_app
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.monitoring.events import QueryEvent
from llmops.server import create_app

OFF = {"metrics": False, "request_log": {"enabled": False}}


def monitoring_on(folder: Path) -> dict[str, Any]:
    reference = folder / "reference.jsonl"
    reference.write_text("\n".join(json.dumps({"question": q}) for q in QUESTIONS * 4))
    drift = {"reference": {"dataset": str(reference)}, "every_minutes": None}
    return {"metrics": True, "request_log": {"enabled": True}, "drift": drift}


def app(folder: Path, monitoring: dict[str, Any]) -> RAG:
    folder.mkdir()
    config = write_app(folder, ROOT / "datasets" / "guide", ["**/*.md"], monitoring=monitoring)
    rag = RAG.from_config(config)
    rag.ingest()
    return rag


def timed(client: TestClient, question: str) -> float:
    started = time.perf_counter()
    response = client.post("/query", json={"question": question})
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    return elapsed


def paired_times(
    clients: dict[str, TestClient], rounds: int, requests: int
) -> dict[str, list[list[float]]]:
    """Each round: ``requests`` questions, each sent to every app back to back (in turn
    first), so load from elsewhere on the machine lands on them alike; per app and round, each
    request's time in ms (the i-th of every app answers the same question)."""
    times: dict[str, list[list[float]]] = {name: [] for name in clients}
    for _ in range(rounds):
        for values in times.values():
            values.append([])
        for i in range(requests):
            order = list(clients) if i % 2 else list(reversed(clients))
            for name in order:
                times[name][-1].append(timed(clients[name], QUESTIONS[i % len(QUESTIONS)]))
    return times


def paired_p50s(
    clients: dict[str, TestClient], rounds: int, requests: int
) -> dict[str, list[float]]:
    """One p50 per app and round of ``paired_times``."""
    times = paired_times(clients, rounds, requests)
    return {name: [percentile(r, 50) for r in per_round] for name, per_round in times.items()}


def hook_cost_us(rag: RAG, calls: int = 20_000) -> float:
    """One query's worth of hooks: Monitor.observe and the HTTP middleware's metrics."""
    answer = rag.query(QUESTIONS[0])
    event = QueryEvent(
        answer.request_id, answer.question, "bench", answer.generator,
        tuple(s.chunk_id for s in answer.sources), tuple(s.score for s in answer.sources),
        len(answer.answer), answer.abstained, answer.latency_ms,
        stages={"embed": 0.006, "retrieve": 0.003, "generate": 0.001},
    )  # fmt: skip
    metrics = rag.monitor.metrics
    assert metrics is not None
    started = time.perf_counter()
    for _ in range(calls):
        rag.monitor.observe(event)
        metrics.http_request("/query", "POST", 200, 0.01, {"backend": "extractive"})
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rags = {
            "on": app(Path(tmp) / "on", monitoring_on(Path(tmp))),
            "off": app(Path(tmp) / "off", OFF),
        }
        with TestClient(create_app(rags["on"])) as on, TestClient(create_app(rags["off"])) as off:
            clients = {"on": on, "off": off}
            paired_p50s(clients, 1, 20)  # warm up
            p50s = paired_p50s(clients, args.rounds, args.requests)
            hooks = hook_cost_us(rags["on"])
    on_ms, off_ms = median(p50s["on"]), median(p50s["off"])
    emit(
        {
            "benchmark": "monitoring_overhead",
            "machine": machine(),
            "rounds": args.rounds,
            "requests_per_round": args.requests,
            "query_p50_ms": {"on": round(on_ms, 2), "off": round(off_ms, 2)},
            "overhead_p50_ms": round(on_ms - off_ms, 2),
            "overhead_paired_median_ms": round(
                median([a - b for a, b in zip(p50s["on"], p50s["off"], strict=True)]), 2
            ),
            "round_p50s_ms": {k: [round(v, 2) for v in vs] for k, vs in p50s.items()},
            "hook_set_us_per_query": round(hooks, 1),
        }
    )


if __name__ == "__main__":
    main()
