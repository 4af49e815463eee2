"""What shadow traffic costs the serving path: query latency with and without a shadow, in one
run of one app.

    python bench/shadow.py [--blocks 20] [--block-size 30] [--delay-ms 50]

One fake OpenAI-compatible backend (tests/stubs/openai_server.py, answering after 50 ms
+-20 %, in its own process) serves every generator. One app (the guide corpus, bundled MiniLM,
hybrid search) runs a shadow experiment: `control` answers; `candidate`, with its own generator
(a second client of the same backend), answers a copy of every request in the background from
the same passages, and each run is recorded in the app's SQLite routing state.

Requests go through the Python API (`RAG.aquery`, what the HTTP route awaits) in blocks of
``--block-size`` at concurrency 1 and at concurrency 8. Blocks alternate between the shadow
switched on and off (the app's shadow runner detached), starting order flipping each pair, so
both modes see the same warm process, index and backend. Reported: p50 and p99 of each mode
over all its requests, and the median over block pairs of the p50 difference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import GUIDE_QUESTIONS, ROOT, emit, machine, percentile, start_fake_backend, stop_server

from llmops import RAG

LEVELS = (1, 8)


def write_app(folder: Path, backend_port: int) -> Path:
    generator = {
        "type": "openai_compat",
        "base_url": f"http://127.0.0.1:{backend_port}/v1",
        "model": "fake",
        "max_concurrency": 64,
    }
    data: dict[str, Any] = {
        "name": "bench",
        "data_dir": str(folder / "data"),
        "sources": [{"path": str(ROOT / "datasets" / "guide"), "include": ["**/*.md"]}],
        "chunker": {"type": "markdown", "chunk_size": 800, "chunk_overlap": 100},
        "generator": generator,
        "monitoring": {"request_log": {"enabled": False}},
        "experiment": {
            "name": "shadowed",
            "strategy": "shadow",
            "variants": {"control": {}, "candidate": {"generator": generator}},
            "shadow": {"variant": "candidate", "max_in_flight": 64},
        },
    }
    config = folder / "shadow.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


async def block(rag: RAG, concurrency: int, size: int, offset: int) -> list[float]:
    """``size`` queries over ``concurrency`` workers; each query's latency in ms."""
    latencies: list[float] = []
    numbers = iter(range(size))

    async def worker() -> None:
        for i in numbers:
            started = time.perf_counter()
            await rag.aquery(GUIDE_QUESTIONS[(offset + i) % len(GUIDE_QUESTIONS)])
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def run(config: Path, args: argparse.Namespace) -> tuple[list[dict[str, Any]], Any]:
    """The levels' figures and the app's own summary of the shadow runs."""
    async with RAG.from_config(config) as rag:
        await rag.aingest()
        levels = await measure(rag, args)
        assert rag.experiment is not None
        report = await rag.experiment.running().report()
    return levels, report["variants"]["candidate"]["shadow"]


async def measure(rag: RAG, args: argparse.Namespace) -> list[dict[str, Any]]:
    experiment = rag.experiment
    assert experiment is not None
    runner = experiment.shadows
    levels = []
    for concurrency in LEVELS:
        await block(rag, concurrency, 40, 0)  # warm up
        samples: dict[str, list[float]] = {"with_shadow": [], "without": []}
        differences = []
        for pair in range(args.blocks):
            order = ("with_shadow", "without") if pair % 2 else ("without", "with_shadow")
            medians = {}
            for mode in order:
                experiment.shadows = runner if mode == "with_shadow" else None
                latencies = await block(rag, concurrency, args.block_size, pair)
                if runner is not None:  # let this block's shadow runs finish
                    while runner.in_flight:
                        await asyncio.sleep(0.01)
                samples[mode] += latencies
                medians[mode] = statistics.median(latencies)
            differences.append(medians["with_shadow"] - medians["without"])
        experiment.shadows = runner
        levels.append(
            {
                "concurrency": concurrency,
                "requests_per_mode": len(samples["without"]),
                **{
                    f"{mode}_{name}_ms": round(percentile(values, q), 2)
                    for mode, values in samples.items()
                    for name, q in (("p50", 50), ("p99", 99))
                },
                "shadow_adds_p50_ms": round(
                    percentile(samples["with_shadow"], 50) - percentile(samples["without"], 50), 2
                ),
                "median_block_p50_difference_ms": round(statistics.median(differences), 2),
            }
        )
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=20, help="block pairs per level")
    parser.add_argument("--block-size", type=int, default=30)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--backend-port", type=int, default=8781)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_app(Path(tmp), args.backend_port)
        backend = start_fake_backend(args.backend_port, args.delay_ms)
        try:
            levels, summary = asyncio.run(run(config, args))
        finally:
            stop_server(backend)
    emit(
        {
            "benchmark": "shadow",
            "machine": machine(),
            "backend_delay_ms": args.delay_ms,
            "block_pairs": args.blocks,
            "block_size": args.block_size,
            "levels": levels,
            "shadow_summary": summary,
        }
    )


if __name__ == "__main__":
    main()
