"""/query throughput and latency at concurrency 1, 8 and 32, beside the in-process floor.

    python bench/query.py [--requests 400]

Serves the quickstart app (the shipped user guide) with `llmops up --no-ingest` in a
subprocess and drives it with a minimal keep-alive HTTP/1.1 client (so the load generator
costs as little CPU as possible on the same machine). The floor is one query embedding plus
one Chroma search, timed in this process with the same model and index.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, emit, machine, median, percentile, write_app

from llmops import RAG

QUESTIONS = [
    "How do I install llmops?",
    "What does make up do?",
    "How are chunk ids made stable?",
    "Which loaders are there?",
    "How do I filter by source?",
    "What happens when the embedding model changes?",
    "How do I add PDF files?",
    "What is MMR?",
    "How do I configure the port?",
    "What does the extractive generator do?",
    "How are secrets passed to the config?",
    "What does /ready report?",
]


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> float:
    started = time.perf_counter()
    writer.write(
        b"POST /query HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)
    return (time.perf_counter() - started) * 1000


async def load(port: int, concurrency: int, total: int) -> dict[str, float]:
    bodies = [json.dumps({"question": q}).encode() for q in QUESTIONS]
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in counter:
            latencies.append(await _one(reader, writer, bodies[i % len(bodies)]))
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": total,
        "throughput_rps": round(total / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }


def floor_ms(rag: RAG, repeats: int = 200) -> float:
    c = rag.components
    active = c.records.active()
    assert active is not None
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        vector = c.embedder.embed_queries([QUESTIONS[i % len(QUESTIONS)]])
        c.store.search(active.collection, vector, 4)
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited early")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("server not ready in time")


def measure(command: list[str], port: int, requests: int) -> list[dict[str, float]]:
    """Start a server, warm it up, load it at concurrency 1, 8 and 32, stop it."""
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_ready(port, proc)
        asyncio.run(load(port, 4, 40))
        return [asyncio.run(load(port, c, requests)) for c in (1, 8, 32)]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _median_levels(rounds: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Per concurrency level, the median of each figure over the rounds."""
    return [
        {key: round(median([r[i][key] for r in rounds]), 2) for key in rounds[0][i]}
        for i in range(len(rounds[0]))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3, help="alternating llmops/reference runs")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--corpus", type=Path, default=ROOT / "datasets" / "guide")
    args = parser.parse_args()
    ours: list[list[dict[str, float]]] = []
    reference: list[list[dict[str, float]]] = []
    floors: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = write_app(
            Path(tmp),
            args.corpus.resolve(),
            ["**/*.md"],
            chunker={"type": "markdown", "chunk_size": 800, "chunk_overlap": 100},
        )
        with RAG.from_config(config) as rag:
            rag.ingest()
            active = rag.components.records.active()
            assert active is not None
            collection = active.collection
        llmops_cmd = [
            sys.executable,
            "-m",
            "llmops.cli.main",
            "up",
            str(config),
            "--no-ingest",
            "--port",
            str(args.port),
        ]
        reference_cmd = [
            sys.executable,
            str(ROOT / "bench" / "reference_server.py"),
            str(Path(tmp) / "data" / "chroma"),
            collection,
            str(args.port),
        ]
        for _ in range(args.rounds):
            with RAG.from_config(config) as rag:
                floors.append(floor_ms(rag))
            ours.append(measure(llmops_cmd, args.port, args.requests))
            reference.append(measure(reference_cmd, args.port, args.requests))
    mine, theirs, floor = _median_levels(ours), _median_levels(reference), median(floors)
    emit(
        {
            "benchmark": "query",
            "machine": machine(),
            "corpus": str(args.corpus),
            "rounds": args.rounds,
            "floor_ms": round(floor, 2),
            "llmops": mine,
            "reference": theirs,
            "c1_p50_minus_floor_ms": round(mine[0]["p50_ms"] - floor, 2),
            "reference_c1_p50_minus_floor_ms": round(theirs[0]["p50_ms"] - floor, 2),
            "c32_throughput_vs_reference": round(
                mine[2]["throughput_rps"] / theirs[2]["throughput_rps"], 2
            ),
            "c32_p99_over_p50": round(mine[2]["p99_ms"] / mine[2]["p50_ms"], 2),
            "all_rounds": {"llmops": ours, "reference": reference, "floors_ms": floors},
        }
    )


if __name__ == "__main__":
    main()
