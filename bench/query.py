"""/query throughput and latency at concurrency 1, 8 and 32, beside the in-process floor.

    python bench/query.py [--requests 400]

Serves the quickstart app (the shipped user guide) with `llmops up --no-ingest` in a
subprocess and drives it with a minimal keep-alive HTTP/1.1 client (so the load generator
costs as little CPU as possible on the same machine). The floor is one query embedding plus
one Chroma search, timed in this process with the same model and index. Both servers search
dense-only, so the comparison is like for like (bench/retrieval.py prices hybrid search).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from common import (
    ROOT,
    emit,
    llmops_up,
    load,
    machine,
    median,
    median_levels,
    start_server,
    stop_server,
    write_app,
)

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
BODIES = [json.dumps({"question": q}).encode() for q in QUESTIONS]


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


def measure(command: list[str], port: int, requests: int) -> list[dict[str, float]]:
    """Start a server, warm it up, load it at concurrency 1, 8 and 32, stop it."""
    proc = start_server(command, port)
    try:
        asyncio.run(load(port, "/query", BODIES, 4, 40))
        return [asyncio.run(load(port, "/query", BODIES, c, requests)) for c in (1, 8, 32)]
    finally:
        stop_server(proc)


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
            retrieval={"mode": "dense"},  # like for like with the reference (dense only);
            # hybrid search's own cost is measured by bench/retrieval.py
        )
        with RAG.from_config(config) as rag:
            rag.ingest()
            active = rag.components.records.active()
            assert active is not None
            collection = active.collection
        llmops_cmd = llmops_up(config, args.port)
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
    mine, theirs, floor = median_levels(ours), median_levels(reference), median(floors)
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
