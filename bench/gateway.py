"""Overhead of llmops's /v1/chat/completions over calling the same backend directly.

    python bench/gateway.py [--requests 300] [--rounds 3] [--delays-ms 0 50] [--workers 1]

A fake OpenAI-compatible backend (tests/stubs/openai_server.py) runs in one subprocess,
`llmops up` with the openai_compat generator pointed at it in another. Two backends:

- delay 0 ms: answers at once. At concurrency 32 this saturates the machine (the client, the
  backend and llmops share the cores), so the "overhead" there is queueing behind llmops's CPU
  per request: it measures capacity.
- delay 50 ms (+-20 %, so the clients drift apart rather than arriving in waves): still far
  faster than any real LLM. This is the overhead a user sees (LiteLLM quotes its ~2 ms the same
  way: a fake endpoint, a load well under capacity).

The same minimal keep-alive client (bench/common.py) then sends, at concurrency 1 and 32:

- direct:  POST backend /v1/chat/completions
- gateway: POST llmops /v1/chat/completions with "retrieval": false (the conversation goes to
           the backend as is: parsing, options, the generator's retry/timeout machinery, the
           OpenAI-shaped response)
- rag:     POST llmops /v1/chat/completions (query embedding, Chroma search, prompt, backend)

Overhead = llmops latency minus direct latency, per percentile. Rounds alternate the three
modes; figures are medians over rounds. Everything shares one machine, so at concurrency 32
the backend, llmops and the client compete for the same cores. The server's CPU time per
request (from /proc, summed over its worker processes) is reported too: it does not depend on
what else runs. ``--workers N`` serves with ``llmops up --workers N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from common import (
    GUIDE_QUESTIONS,
    ROOT,
    cpu_seconds,
    emit,
    llmops_up,
    load,
    machine,
    median_levels,
    start_fake_backend,
    start_server,
    stop_server,
    write_app,
)

from llmops import RAG

LEVELS = (1, 32)


def bodies(model: str, **extra: object) -> list[bytes]:
    return [
        json.dumps({"model": model, "messages": [{"role": "user", "content": q}], **extra}).encode()
        for q in GUIDE_QUESTIONS
    ]


def run_levels(port: int, body: list[bytes], requests: int, pid: int) -> list[dict[str, float]]:
    """Latency percentiles per concurrency level, plus the CPU the server at ``port`` (process
    group ``pid``) spent per request: unlike latency, that does not depend on what else runs."""
    asyncio.run(load(port, "/v1/chat/completions", body, 4, 40))  # warm up
    levels = []
    for concurrency in LEVELS:
        before = cpu_seconds(pid)
        level = asyncio.run(load(port, "/v1/chat/completions", body, concurrency, requests))
        level["server_cpu_ms_per_request"] = (cpu_seconds(pid) - before) * 1000 / requests
        levels.append(level)
    return levels


def measure(config: Path, delay_ms: float, args: argparse.Namespace) -> dict[str, object]:
    """All modes and levels against a backend answering after ``delay_ms``."""
    modes: dict[str, tuple[int, list[bytes]]] = {
        "direct": (args.backend_port, bodies("fake")),
        "gateway": (args.port, bodies("bench", retrieval=False)),
        "rag": (args.port, bodies("bench")),
    }
    results: dict[str, list[list[dict[str, float]]]] = {mode: [] for mode in modes}
    backend = start_fake_backend(args.backend_port, delay_ms)
    server = start_server(llmops_up(config, args.port, args.workers), args.port)
    pids = {"direct": backend.pid, "gateway": server.pid, "rag": server.pid}
    try:
        for _ in range(args.rounds):
            for mode, (port, body) in modes.items():
                results[mode].append(run_levels(port, body, args.requests, pids[mode]))
    finally:
        stop_server(server)
        stop_server(backend)
    medians = {mode: median_levels(rounds) for mode, rounds in results.items()}
    overhead = {
        mode: [
            {
                "concurrency": level["concurrency"],
                "p50_ms": round(level["p50_ms"] - direct["p50_ms"], 2),
                "p99_ms": round(level["p99_ms"] - direct["p99_ms"], 2),
            }
            for level, direct in zip(medians[mode], medians["direct"], strict=True)
        ]
        for mode in ("gateway", "rag")
    }
    return {
        "backend_delay_ms": delay_ms,
        "overhead_over_direct": overhead,
        "medians": medians,
        "all_rounds": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delays-ms", type=float, nargs="+", default=[0.0, 50.0])
    parser.add_argument("--backend-port", type=int, default=8771)
    parser.add_argument("--port", type=int, default=8772)
    parser.add_argument("--workers", type=int, default=1, help="llmops up --workers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generator = {
            "type": "openai_compat",
            "base_url": f"http://127.0.0.1:{args.backend_port}/v1",
            "model": "fake",
            "max_concurrency": 64,
        }
        config = write_app(
            Path(tmp),
            ROOT / "datasets" / "guide",
            ["**/*.md"],
            chunker={"type": "markdown", "chunk_size": 800, "chunk_overlap": 100},
            generator=generator,
        )
        with RAG.from_config(config) as rag:
            rag.ingest()
        scenarios = [measure(config, delay, args) for delay in args.delays_ms]
    emit(
        {
            "benchmark": "gateway",
            "machine": machine(),
            "rounds": args.rounds,
            "workers": args.workers,
            "requests_per_level": args.requests,
            "scenarios": scenarios,
        }
    )


if __name__ == "__main__":
    main()
