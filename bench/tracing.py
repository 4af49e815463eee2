"""What tracing costs on /query: p50 with tracing off and on, in one process.

    python bench/tracing.py [--rounds 7] [--requests 60] [--exporter otlp-http|otlp-grpc]

Two apps over the shipped user guide (datasets/guide, bundled MiniLM, extractive answers)
differ only in ``monitoring.tracing``: off (the default), or on with every request sampled,
exported by the SDK's BatchSpanProcessor over OTLP to a receiver in another process on
127.0.0.1 (llmops.testing.otlp), and the last 100 traces kept for GET /traces. Both are
driven through FastAPI's in-process TestClient, each question sent to both apps back to back
(alternating which goes first), so background load hits both alike; we report the median over
rounds of each round's p50, and the median of the paired per-round differences. Then one
span's cost alone: the SDK tracer of the "on" app and the API's no-op tracer, over 20,000
spans, and the spans one query makes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import GUIDE_QUESTIONS as QUESTIONS
from common import ROOT, emit, machine, median, write_app
from fastapi.testclient import TestClient
from monitoring import paired_p50s  # bench/monitoring.py: the paired p50 rounds

from llmops import RAG
from llmops.server import create_app
from llmops.tracing import NOOP
from llmops.tracing.recent import RecentTraces

RECEIVER = """
import sys
from llmops.testing.otlp import {kind}
with {kind}() as collector:
    print(collector.endpoint, flush=True)
    sys.stdin.read()  # until the benchmark closes the pipe
    print(len(collector.spans), flush=True)
"""
COLLECTORS = {"otlp-http": "HttpCollector", "otlp-grpc": "GrpcCollector"}


def app(folder: Path, tracing: dict[str, Any]) -> RAG:
    folder.mkdir()
    guide = ROOT / "datasets" / "guide"
    config = write_app(folder, guide, ["**/*.md"], monitoring={"tracing": tracing})
    rag = RAG.from_config(config)
    rag.ingest()
    return rag


def span_cost_us(tracer: Any, flush: Any = None, spans: int = 500, batches: int = 20) -> float:
    """One span started, made current and ended, with two attributes: the median over
    batches (the exporter's queue flushed between batches, untimed, so none is dropped)."""
    per_span = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(spans):
            with tracer.start_as_current_span("bench", attributes={"a": 1, "b": "x"}):
                pass
        per_span.append((time.perf_counter() - started) / spans * 1e6)
        if flush is not None:
            flush()
    return median(per_span)


def cpu_ms_per_query(
    clients: dict[str, TestClient], flushes: dict[str, Any], blocks: int, requests: int
) -> dict[str, float]:
    """Process CPU time (every thread: the server's, the exporter's) per query, each app in
    turn over blocks of ``requests``, its exporter flushed inside the block: the whole cost,
    less sensitive than wall time to other processes on the machine."""
    per_query: dict[str, list[float]] = {name: [] for name in clients}
    for block in range(blocks):
        for name in list(clients)[:: 1 if block % 2 else -1]:
            started = time.process_time()
            for i in range(requests):
                question = QUESTIONS[i % len(QUESTIONS)]
                response = clients[name].post("/query", json={"question": question})
                assert response.status_code == 200, response.text
            flushes[name]()
            per_query[name].append((time.process_time() - started) / requests * 1000)
    return {name: median(values) for name, values in per_query.items()}


TRACING_FRAMES = ("(opentelemetry/", "(llmops/tracing/")
"""Frames of tracing work: the SDK and API (spans, processors, the exporter's thread) and
llmops's own tracing module; the middleware and generator wrappers only call into these."""


def tracing_share(client: TestClient, flush: Any, requests: int, folder: Path) -> dict[str, Any]:
    """py-spy (every thread, 250 Hz) attached while the traced app answers ``requests``
    queries and exports them: the share of CPU samples in tracing frames, a ratio that load
    from other processes inflates less than it inflates times."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = folder / "profile.txt"
    command = [spy, "record", "--pid", str(os.getpid()), "--rate", "250", "--format", "raw"]
    recorder = subprocess.Popen([*command, "--output", str(out)], stdout=subprocess.DEVNULL)
    time.sleep(2)  # attached
    for i in range(requests):
        client.post("/query", json={"question": QUESTIONS[i % len(QUESTIONS)]})
    flush()
    recorder.send_signal(signal.SIGINT)
    recorder.wait(timeout=60)
    total = traced = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        if any(frame in stack for frame in TRACING_FRAMES):
            traced += int(count)
    return {"samples": total, "in_tracing": traced, "share": round(traced / max(total, 1), 4)}


def spans_per_query(recent: RecentTraces) -> int:
    return int(recent.recent(1)[0]["spans"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--exporter", choices=sorted(COLLECTORS), default="otlp-http")
    args = parser.parse_args()
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER.format(kind=COLLECTORS[args.exporter])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None and receiver.stdin is not None
    endpoint = receiver.stdout.readline().strip()
    on = {"enabled": True, "exporter": args.exporter, "endpoint": endpoint}
    with tempfile.TemporaryDirectory() as tmp:
        rags = {"on": app(Path(tmp) / "on", on), "off": app(Path(tmp) / "off", {})}
        traced, plain = TestClient(create_app(rags["on"])), TestClient(create_app(rags["off"]))
        with traced, plain:
            clients = {"on": traced, "off": plain}
            paired_p50s(clients, 1, 20)  # warm up
            p50s = paired_p50s(clients, args.rounds, args.requests)
            tracing = rags["on"].components.tracing
            assert tracing.recent is not None
            per_query = spans_per_query(tracing.recent)
            flushes = {name: rag.components.tracing.flush for name, rag in rags.items()}
            cpu = cpu_ms_per_query(clients, flushes, args.rounds, args.requests)
            profile = tracing_share(traced, tracing.flush, args.requests * 5, Path(tmp))
            sdk_us = span_cost_us(tracing.tracer, tracing.flush)
            noop_us = span_cost_us(NOOP)
    receiver.stdin.close()
    received = int(receiver.stdout.readline())
    receiver.wait(timeout=30)
    on_ms, off_ms = median(p50s["on"]), median(p50s["off"])
    paired = [a - b for a, b in zip(p50s["on"], p50s["off"], strict=True)]
    emit(
        {
            "benchmark": "tracing_overhead",
            "machine": machine(),
            "exporter": args.exporter,
            "rounds": args.rounds,
            "requests_per_round": args.requests,
            "query_p50_ms": {"on": round(on_ms, 3), "off": round(off_ms, 3)},
            "overhead_p50_ms": round(on_ms - off_ms, 3),
            "overhead_paired_median_ms": round(median(paired), 3),
            "round_p50s_ms": {k: [round(v, 3) for v in vs] for k, vs in p50s.items()},
            "cpu_ms_per_query": {k: round(v, 3) for k, v in cpu.items()},
            "cpu_overhead_ms_per_query": round(cpu["on"] - cpu["off"], 3),
            "profile_on": {
                **profile,
                "tracing_ms_per_query": round(profile["share"] * cpu["on"], 3),
            },
            "spans_per_query": per_query,
            "span_cost_us": {"sdk": round(sdk_us, 2), "noop": round(noop_us, 2)},
            "spans_received_by_collector": received,
        }
    )


if __name__ == "__main__":
    main()
