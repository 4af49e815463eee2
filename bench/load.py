"""Sustained load on ``/query`` and ``/v1/chat/completions``: errors, latency, memory drift.

    python bench/load.py [--corpus fastapi-docs|guide] [--seconds 60] [--concurrency 32]
                         [--warmup-s 10] [--workdir DIR] [--out results.json]

Corpus ``fastapi-docs`` (default; ../shared/datasets/fastapi-docs, skipped when absent): the
155 Markdown pages, recursive chunker 1,000/200, the default app otherwise (bundled MiniLM,
hybrid retrieval, extractive answers: no LLM). Corpus ``guide``: the shipped user guide.

The app is indexed once in this process (``--workdir`` keeps the index between runs), then
served by a real ``llmops up --no-ingest`` subprocess on a free loopback port. After a warm-up
on both routes, ``--concurrency`` keep-alive clients post questions for ``--seconds`` to
``/query``, then as long to ``/v1/chat/completions``. Every request's status and latency is
kept; a failed connection counts as an error and the client reconnects. The resident memory
of the server (its process and children, psutil) is sampled every second; "start" is the
sample taken after the warm-up, "end" the one after the last phase.

Prints one JSON object (also written to ``--out``) and a Markdown table on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from common import (
    GUIDE_QUESTIONS,
    ROOT,
    SHARED,
    dataset,
    emit,
    llmops_up,
    machine,
    percentile,
    start_server,
    stop_server,
    write_app,
)

from llmops import RAG

APP = "load"
CHUNKER = {"type": "recursive", "chunk_size": 1000, "chunk_overlap": 200}
FASTAPI_QUESTIONS = [
    "How do I declare a path parameter with a type?",
    "How do I return a custom status code?",
    "What is a dependency with yield?",
    "How do I add CORS middleware?",
    "How do I upload a file?",
    "How do I run background tasks after returning a response?",
    "How are query parameters validated?",
    "How do I use OAuth2 with password and bearer tokens?",
    "How do I test an app with TestClient?",
    "How do I serve static files?",
    "What does response_model do?",
    "How do I handle errors with HTTPException?",
]
PATHS = ("/query", "/v1/chat/completions")


@dataclass
class Phase:
    """What the clients saw on one route: (status, latency ms) per request; status 0 for a
    connection that failed."""

    path: str
    results: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        latencies = [ms for _, ms in self.results]
        errors = sum(1 for status, _ in self.results if status != 200)
        return {
            "path": self.path,
            "seconds": round(self.seconds, 1),
            "requests": len(self.results),
            "errors": errors,
            "statuses": {str(s): sum(1 for t, _ in self.results if t == s) for s in self.statuses},
            "throughput_rps": round(len(self.results) / self.seconds, 1),
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies), 1),
        }

    @property
    def statuses(self) -> list[int]:
        return sorted({status for status, _ in self.results})


def body(path: str, question: str) -> bytes:
    if path == "/query":
        return json.dumps({"question": question}).encode()
    messages = [{"role": "user", "content": question}]
    return json.dumps({"model": APP, "messages": messages}).encode()


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, payload: bytes
) -> int:
    """One keep-alive HTTP/1.1 POST; the response's status."""
    writer.write(
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n".encode()
        + f"content-length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        None,
    )
    if length is None:
        raise ValueError(f"no content-length: {head!r}")
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def drive(
    port: int, phase: Phase, questions: list[str], clients: int, seconds: float
) -> None:
    """``clients`` connections posting questions in turn until ``seconds`` have passed."""
    payloads = [body(phase.path, q) for q in questions]
    deadline = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        i = offset
        connection = None
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                connection = connection or await asyncio.open_connection("127.0.0.1", port)
                status = await _post(*connection, phase.path, payloads[i % len(payloads)])
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                status = 0
                if connection is not None:
                    connection[1].close()
                connection = None
            phase.results.append((status, (time.perf_counter() - started) * 1000))
            i += 1
        if connection is not None:
            connection[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    phase.seconds = time.perf_counter() - started


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MiB."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total / 2**20


async def sample(pid: int, samples: list[tuple[float, float]], started: float) -> None:
    while True:
        samples.append((round(time.perf_counter() - started, 1), round(rss_mb(pid), 1)))
        await asyncio.sleep(1.0)


async def run_load(pid: int, port: int, questions: list[str], args: Any) -> dict[str, Any]:
    for path in PATHS:  # warm-up: models, caches, the allocator's arenas
        await drive(port, Phase(path), questions, args.concurrency, args.warmup_s / 2)
    samples: list[tuple[float, float]] = []
    sampler = asyncio.ensure_future(sample(pid, samples, time.perf_counter()))
    await asyncio.sleep(0)  # the first sample: memory at the start of the load
    phases = []
    for path in PATHS:
        phases.append(Phase(path))
        await drive(port, phases[-1], questions, args.concurrency, args.seconds)
    sampler.cancel()
    samples.append((samples[-1][0] + 1, round(rss_mb(pid), 1)))
    start, end = samples[0][1], samples[-1][1]
    return {
        "phases": [p.summary() for p in phases],
        "rss_mb": {
            "start": start,
            "end": end,
            "max": max(s for _, s in samples),
            "drift": round(end - start, 1),
            "drift_pct": round(100 * (end - start) / start, 1),
        },
        "rss_samples": samples,
    }


def make_app(folder: Path, corpus: str) -> tuple[Path, list[str]]:
    if corpus == "fastapi-docs":
        source, questions = dataset("fastapi-docs"), FASTAPI_QUESTIONS
    else:
        source, questions = (ROOT / "datasets" / "guide").resolve(), GUIDE_QUESTIONS
    config = write_app(folder, source, ["**/*.md"], name=APP, chunker=CHUNKER)
    return config, questions


def load_average() -> list[float]:
    """The 1, 5 and 15 min load averages: the figures mean little if other work shared the CPUs."""
    return [round(x, 2) for x in os.getloadavg()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def table(result: dict[str, Any]) -> str:
    rss = result["rss_mb"]
    lines = [
        "| route | clients | seconds | requests | errors | req/s | p50 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in result["phases"]:
        lines.append(
            f"| `{p['path']}` | {result['concurrency']} | {p['seconds']} | {p['requests']} | "
            f"{p['errors']} | {p['throughput_rps']} | {p['p50_ms']} | {p['p99_ms']} | "
            f"{p['max_ms']} |"
        )
    before, after = result["load_average_before_after"]
    lines.append("")
    lines.append(f"Load average (1/5/15 min) before {before}, after {after}.")
    lines.append(
        f"Server RSS (process + children): start {rss['start']} MiB, end {rss['end']} MiB, "
        f"max {rss['max']} MiB, drift {rss['drift']:+} MiB ({rss['drift_pct']:+} %)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", choices=["fastapi-docs", "guide"], default="fastapi-docs")
    parser.add_argument("--seconds", type=float, default=60.0, help="per route")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup-s", type=float, default=10.0, help="both routes together")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the index here")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.workdir or Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        config, questions = make_app(folder, args.corpus)
        with RAG.from_config(config) as rag:
            report = rag.ingest()
        port, load_before = free_port(), load_average()
        proc = start_server(llmops_up(config, port, args.workers), port)
        try:
            measured = asyncio.run(run_load(proc.pid, port, questions, args))
        finally:
            stop_server(proc)
    result = {
        "benchmark": "load",
        "machine": machine(),
        "load_average_before_after": [load_before, load_average()],
        "corpus": args.corpus,
        "shared_datasets": str(SHARED),
        "chunks": report.chunks_total,
        "ingest_s": round(report.seconds, 1),
        "workers": args.workers,
        "concurrency": args.concurrency,
        "seconds_per_route": args.seconds,
        **measured,
    }
    print(table(result), file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    emit(result)


if __name__ == "__main__":
    main()
