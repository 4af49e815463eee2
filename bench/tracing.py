"""What tracing costs on /query: p50 and CPU with tracing off and on, in one process.

    python bench/tracing.py [--rounds 7] [--requests 60] [--exporter otlp-http|otlp-grpc]

Three apps over the shipped user guide (datasets/guide, bundled MiniLM, extractive answers)
differ only in ``monitoring.tracing``: ``off`` (the default); ``on``, every request sampled and
exported as shipped (the SDK's BatchSpanProcessor exporting from a thread of the app: OTLP
encoded and sent to a receiver in another process on 127.0.0.1), the last 100 traces kept for
GET /traces; and ``process``, the same but exported from a child process
(``export_process: true``). They are driven through FastAPI's in-process
TestClient, each question sent to every app back to back (the order alternating), so load
from elsewhere on the machine hits them alike. Per round, each app's p50; reported: the median
over rounds of each p50, and of each round's difference and ratio against ``off`` (paired).
Then CPU per query, each app in turn over blocks of queries with its exporter flushed inside
the block: this process's CPU (every thread) and the export process's; then one span's cost
(the SDK tracer against the API's no-op tracer); and every span ended must reach the receiver.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import GUIDE_QUESTIONS as QUESTIONS
from common import ROOT, emit, machine, median, write_app
from fastapi.testclient import TestClient
from monitoring import paired_p50s  # bench/monitoring.py: the paired p50 rounds
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from llmops import RAG
from llmops.server import create_app
from llmops.tracing import NOOP

RECEIVER = """
import sys
from llmops.testing.otlp import {kind}
with {kind}() as collector:
    print(collector.endpoint, flush=True)
    sys.stdin.read()  # until the benchmark closes the pipe
    print(len(collector.spans), flush=True)
"""
COLLECTORS = {"otlp-http": "HttpCollector", "otlp-grpc": "GrpcCollector"}
EXPORT_PROCESS = "llmops.tracing.offload"


class Ended(SpanProcessor):
    """Counts the sampled spans that end (what the receiver must get)."""

    def __init__(self) -> None:
        self.count = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.count += 1


def app(folder: Path, tracing: dict[str, Any]) -> RAG:
    folder.mkdir()
    guide = ROOT / "datasets" / "guide"
    config = write_app(folder, guide, ["**/*.md"], monitoring={"tracing": tracing})
    return RAG.from_config(config)


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


def export_process_cpu_s() -> float:
    """CPU seconds (user + system) of this process's live export processes (Linux /proc)."""
    total = 0
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and EXPORT_PROCESS in (entry / "cmdline").read_text():
                total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def cpu_ms_per_query(
    clients: dict[str, TestClient], flushes: dict[str, Callable[[], None]], rounds: int, n: int
) -> dict[str, dict[str, float]]:
    """Per app, CPU per query over blocks of ``n`` queries (apps in turn, the order
    alternating), its exporter flushed inside the block: this process's (every thread) and
    the export processes' (only ``on`` has one)."""
    own: dict[str, list[float]] = {name: [] for name in clients}
    child: dict[str, list[float]] = {name: [] for name in clients}
    for block in range(rounds):
        for name in list(clients)[:: 1 if block % 2 else -1]:
            for flush in flushes.values():
                flush()  # nothing of another app's left to export inside this block
            started, exported = time.process_time(), export_process_cpu_s()
            for i in range(n):
                response = clients[name].post("/query", json={"question": QUESTIONS[i % 6]})
                assert response.status_code == 200, response.text
            flushes[name]()
            own[name].append((time.process_time() - started) / n * 1000)
            child[name].append((export_process_cpu_s() - exported) / n * 1000)
    return {
        name: {"app": median(own[name]), "export_process": median(child[name])} for name in clients
    }


def compared(p50s: dict[str, list[float]]) -> dict[str, Any]:
    """Each app's median p50, and its paired difference and ratio against ``off``."""
    off = p50s["off"]
    out: dict[str, Any] = {}
    for name, values in p50s.items():
        out[name] = {
            "p50_ms": round(median(values), 3),
            "minus_off_ms": round(median([a - b for a, b in zip(values, off, strict=True)]), 3),
            "ratio_to_off": round(median([a / b for a, b in zip(values, off, strict=True)]), 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--exporter", choices=sorted(COLLECTORS), default="otlp-http")
    args = parser.parse_args()
    load_before = machine()["load_average"]
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER.format(kind=COLLECTORS[args.exporter])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None and receiver.stdin is not None
    endpoint = receiver.stdout.readline().strip()
    on = {"enabled": True, "exporter": args.exporter, "endpoint": endpoint}
    settings = {"off": {}, "on": on, "process": {**on, "export_process": True}}
    ended = {"on": Ended(), "process": Ended()}
    with tempfile.TemporaryDirectory() as tmp:
        rags = {name: app(Path(tmp) / name, tracing) for name, tracing in settings.items()}
        for name, counter in ended.items():
            provider: Any = rags[name].components.tracing.provider
            provider.add_span_processor(counter)
        for rag in rags.values():
            rag.ingest()
        clients = {name: TestClient(create_app(rag)) for name, rag in rags.items()}
        flushes = {name: rag.components.tracing.flush for name, rag in rags.items()}
        for client in clients.values():
            client.__enter__()
        paired_p50s(clients, 1, 20)  # warm up (the export process starts)
        p50s = paired_p50s(clients, args.rounds, args.requests)
        cpu = cpu_ms_per_query(clients, flushes, args.rounds, args.requests)
        tracing = rags["on"].components.tracing
        assert tracing.recent is not None
        per_query = int(tracing.recent.recent(1)[0]["spans"])
        sdk_us = span_cost_us(tracing.tracer, tracing.flush)
        noop_us = span_cost_us(NOOP)
        for client in clients.values():
            client.__exit__(None, None, None)
        for rag in rags.values():
            rag.components.tracing.shutdown()
    receiver.stdin.close()
    received = int(receiver.stdout.readline())
    receiver.wait(timeout=30)
    emit(
        {
            "benchmark": "tracing_overhead",
            "machine": {**machine(), "load_average_before": load_before},
            "exporter": args.exporter,
            "rounds": args.rounds,
            "requests_per_round": args.requests,
            "query_p50": compared(p50s),
            "round_p50s_ms": {k: [round(v, 3) for v in vs] for k, vs in p50s.items()},
            "cpu_ms_per_query": {k: {s: round(v, 3) for s, v in c.items()} for k, c in cpu.items()},
            "spans_per_query": per_query,
            "span_cost_us": {"sdk": round(sdk_us, 2), "noop": round(noop_us, 2)},
            "spans_ended": sum(c.count for c in ended.values()),
            "spans_received_by_collector": received,
        }
    )


if __name__ == "__main__":
    main()
