"""What tracing costs on /query: p50 and CPU with tracing off and on, in one process.

    python bench/tracing.py [--rounds 7] [--requests 60] [--exporter otlp-http|otlp-grpc]
                            [--driver testclient|asgi]

Five apps over the shipped user guide (datasets/guide, bundled MiniLM, extractive answers)
differ only in ``monitoring.tracing``: ``off`` (the default); ``spans_only``, every request's
spans made and ended but neither kept nor exported (the request path's own share); ``on``,
every request sampled and exported as shipped (the SDK's BatchSpanProcessor exporting from a
thread of the app: OTLP encoded and sent to a receiver in another process on 127.0.0.1), the
last 100 traces kept for GET /traces; ``on_sampled_10pct``, the same with ``sample_ratio:
0.1``; and ``on_sdk_spans``, ``on`` with the SDK's spans made on the request path as before
llmops deferred them (``llmops.tracing.deferred``), to show what the deferral buys. They are
driven through FastAPI's in-process TestClient (``--driver asgi``: called as ASGI apps on one
event loop in this thread, without TestClient's thread hand-off; uvicorn too
runs the app on its loop thread), each question sent to every app back to back (the order
alternating), so load from elsewhere on the machine hits them alike (their query encoders'
threads do not spin-wait, llmops' default for a queries-only encoder, so one app's idle threads
take no core from the next). Reported against ``off``: the median over rounds of each round's
p50 difference and ratio, the difference of the pooled p50s, and the median of the per-request
differences (the same question, back to back) with a 95 % bootstrap interval. Then CPU per
query, each app in turn over blocks of queries with its spans replayed and exported inside the
block (this process's CPU, every thread: the deferred work is counted); then one span's cost
(llmops' recording tracer, the SDK's tracer, the API's no-op tracer); and every span sampled
must reach the receiver."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import numpy as np
from common import GUIDE_QUESTIONS as QUESTIONS
from common import ROOT, emit, machine, median, percentile, write_app
from fastapi.testclient import TestClient
from monitoring import paired_times  # bench/monitoring.py: the paired rounds
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from llmops import RAG
from llmops.server import create_app
from llmops.tracing import NOOP, sdk

RECEIVER = """
import sys
from llmops.testing.otlp import {kind}
with {kind}() as collector:
    print(collector.endpoint, flush=True)
    sys.stdin.read()  # until the benchmark closes the pipe
    print(len(collector.spans), flush=True)
"""
COLLECTORS = {"otlp-http": "HttpCollector", "otlp-grpc": "GrpcCollector"}


class AsgiClient:
    """TestClient's ``post`` and context manager, with the app called as an ASGI callable on one
    event loop in this thread (``--driver asgi``): the app's own cost, without TestClient's
    hand-off of every request to a portal thread and back (uvicorn runs the app on its loop
    thread, as here)."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app, self.loop = app, loop
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x")
        self._lifespan = app.router.lifespan_context(app)

    def __enter__(self) -> AsgiClient:
        self.loop.run_until_complete(self._lifespan.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))

    def post(self, path: str, json: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.post(path, json=json))


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


def sdk_spans_app(folder: Path, tracing: dict[str, Any]) -> RAG:
    """``app`` with the SDK's tracer handed to the request path, as before spans were deferred
    (llmops.tracing.deferred): each span made by the SDK when it starts."""
    with mock.patch.object(sdk, "DeferredTracer", lambda _sampler, replay: replay.sdk_tracer):
        return app(folder, tracing)  # the components (and their tracer) are built here


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
    clients: dict[str, TestClient], flushes: dict[str, Callable[[], None]], rounds: int, n: int
) -> dict[str, float]:
    """Per app, this process's CPU (every thread) per query over blocks of ``n`` queries
    (apps in turn, the order alternating), its exporter flushed inside the block."""
    own: dict[str, list[float]] = {name: [] for name in clients}
    for block in range(rounds):
        for name in list(clients)[:: 1 if block % 2 else -1]:
            for flush in flushes.values():
                flush()  # nothing of another app's left to export inside this block
            started = time.process_time()
            for i in range(n):
                response = clients[name].post("/query", json={"question": QUESTIONS[i % 6]})
                assert response.status_code == 200, response.text
            flushes[name]()
            own[name].append((time.process_time() - started) / n * 1000)
    return {name: median(values) for name, values in own.items()}


def paired_loop_cpu(clients: dict[str, Any], rounds: int, n: int) -> dict[str, list[list[float]]]:
    """``--driver asgi``: each request's CPU on this thread, which runs the apps' event loop
    (the request path; not the query encoder's, the exporter's or the span replay's threads),
    the apps in turn per question as in ``paired_times``; ms, one list per app."""
    cpu: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(rounds):
        for i in range(n):
            for name in list(clients)[:: 1 if i % 2 else -1]:
                started = time.thread_time()
                response = clients[name].post("/query", json={"question": QUESTIONS[i % 6]})
                cpu[name].append((time.thread_time() - started) * 1000)
                assert response.status_code == 200, response.text
    return {name: [values] for name, values in cpu.items()}


def compared(times: dict[str, list[list[float]]], seed: int = 0) -> dict[str, Any]:
    """Against ``off``, per app: the median over rounds of its p50, of the paired difference
    of the rounds' p50s and of their ratio; the difference of the p50s of all requests pooled;
    and the median of the per-request differences (the same question, back to back) with a
    95 % bootstrap interval over requests."""
    off = times["off"]
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, rounds in times.items():
        p50s = [percentile(r, 50) for r in rounds]
        off_p50s = [percentile(r, 50) for r in off]
        pooled = [t for r in rounds for t in r]
        pooled_off = [t for r in off for t in r]
        diffs = np.array(pooled) - np.array(pooled_off)
        boot = np.median(rng.choice(diffs, size=(2000, diffs.size)), axis=1)
        out[name] = {
            "p50_ms": round(median(p50s), 3),
            "pooled_p99_ms": round(percentile(pooled, 99), 3),
            "pooled_p99_minus_off_ms": round(
                percentile(pooled, 99) - percentile(pooled_off, 99), 3
            ),
            "minus_off_ms": round(median([a - b for a, b in zip(p50s, off_p50s, strict=True)]), 3),
            "ratio_to_off": round(median([a / b for a, b in zip(p50s, off_p50s, strict=True)]), 4),
            "pooled_p50_minus_off_ms": round(
                percentile(pooled, 50) - percentile(pooled_off, 50), 3
            ),
            "paired_median_diff_ms": round(float(np.median(diffs)), 3),
            "paired_median_diff_ci95_ms": [
                round(float(np.percentile(boot, 2.5)), 3),
                round(float(np.percentile(boot, 97.5)), 3),
            ],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--exporter", choices=sorted(COLLECTORS), default="otlp-http")
    parser.add_argument(
        "--driver", choices=["testclient", "asgi"], default="testclient",
        help="asgi: the apps called in this thread's event loop (see AsgiClient)",
    )  # fmt: skip
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
    # spans: recorded and ended, neither kept nor exported (the request path's own share)
    spans_only = {"enabled": True, "exporter": "none", "keep_recent": 0}
    sampled = {**on, "sample_ratio": 0.1}  # one trace in ten recorded and exported
    settings = {"off": {}, "spans_only": spans_only, "on": on, "on_sampled_10pct": sampled}
    ended = {"on": Ended(), "on_sampled_10pct": Ended()}
    with tempfile.TemporaryDirectory() as tmp:
        rags = {name: app(Path(tmp) / name, tracing) for name, tracing in settings.items()}
        rags["on_sdk_spans"] = sdk_spans_app(Path(tmp) / "on_sdk_spans", on)
        ended["on_sdk_spans"] = Ended()
        for name, counter in ended.items():
            provider: Any = rags[name].components.tracing.provider
            provider.add_span_processor(counter)
        for rag in rags.values():
            rag.ingest()
        loop = asyncio.new_event_loop()
        clients: dict[str, Any] = {
            name: AsgiClient(create_app(rag), loop)
            if args.driver == "asgi"
            else TestClient(create_app(rag))
            for name, rag in rags.items()
        }
        flushes = {name: rag.components.tracing.flush for name, rag in rags.items()}
        for client in clients.values():
            client.__enter__()
        paired_times(clients, 1, 20)  # warm up
        times = paired_times(clients, args.rounds, args.requests)
        cpu = cpu_ms_per_query(clients, flushes, args.rounds, args.requests)
        loop_cpu = None
        if args.driver == "asgi":
            loop_cpu = compared(paired_loop_cpu(clients, args.rounds, args.requests))
        tracing = rags["on"].components.tracing
        assert tracing.recent is not None
        per_query = int(tracing.recent.recent(1)[0]["spans"])
        recorded_us = span_cost_us(tracing.tracer, tracing.flush)
        provider = tracing.provider
        sdk_us = span_cost_us(provider.get_tracer("bench"), tracing.flush)  # type: ignore[union-attr]
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
            "driver": args.driver,
            "rounds": args.rounds,
            "requests_per_round": args.requests,
            "query_p50": compared(times),
            "round_p50s_ms": {
                k: [round(percentile(r, 50), 3) for r in rounds] for k, rounds in times.items()
            },
            "cpu_ms_per_query": {k: round(v, 3) for k, v in cpu.items()},
            "loop_thread_cpu_per_query": loop_cpu,
            "spans_per_query": per_query,
            "span_cost_us": {
                "recorded (llmops' tracer, made into the SDK's span later)": round(recorded_us, 2),
                "sdk": round(sdk_us, 2),
                "noop": round(noop_us, 2),
            },
            "spans_ended": sum(c.count for c in ended.values()),
            "spans_received_by_collector": received,
        }
    )


if __name__ == "__main__":
    main()
