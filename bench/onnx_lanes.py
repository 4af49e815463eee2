"""ONNX embedder lanes: a call's batches side by side, one per core, or one after the other.

    python bench/onnx_lanes.py [--repeats 5] [--sample 8]

The bare ``OnnxEncoder`` (tokenize, run, pool; no pipeline) with ``lanes`` = the physical
cores (each batch on one thread, the default) against ``lanes=1`` (each batch's operators split
over all cores, as before), in alternating rounds in this one process:

- documents: every ``--sample``-th chunk of the FastAPI docs (recursive 1,000/200), int8, in
  slices of 32 (as the encoder thread hands them over), batches of 4: chunks/s;
- queries: 512 SciFact claims in groups of 32 (what concurrent requests hand the encoder
  thread), fp32 and int8, batches of 4: queries/s; and one claim at a time: p50 ms.

Ratios per round to ``lanes=1``, then the median. Skips cleanly without ../shared/datasets.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import dataset, emit, machine, median, write_app
from ingest import CHUNKER, chunk_texts

from llmops import RAG
from llmops.rag.embedders.onnx_runtime import OnnxEncoder, usable_cores
from llmops.rag.embedders.sentence_transformers import bundled_model_path

GROUP, BATCH = 32, 4


def per_second(encoder: OnnxEncoder, texts: list[str]) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), GROUP):
        encoder.encode(texts[start : start + GROUP], BATCH, True)
    return len(texts) / (time.perf_counter() - started)


def one_at_a_time_ms(encoder: OnnxEncoder, texts: list[str]) -> float:
    times = []
    for text in texts:
        started = time.perf_counter()
        encoder.encode([text], BATCH, True)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def rounds(
    encoders: dict[int, OnnxEncoder], measure: Callable[[OnnxEncoder], float], repeats: int
) -> dict[str, Any]:
    """``measure`` of each lane count per round (order alternating), medians and ratios."""
    seen: dict[int, list[float]] = {lanes: [] for lanes in encoders}
    for number in range(repeats):
        order = list(encoders) if number % 2 == 0 else list(encoders)[::-1]
        for lanes in order:
            seen[lanes].append(measure(encoders[lanes]))
    out: dict[str, Any] = {f"lanes_{n}": round(median(values), 2) for n, values in seen.items()}
    for lanes in seen.keys() - {1}:
        ratios = [value / alone for value, alone in zip(seen[lanes], seen[1], strict=True)]
        out[f"ratio_{lanes}_to_1"] = round(median(ratios), 3)
        out[f"ratio_{lanes}_to_1_rounds"] = [round(r, 3) for r in ratios]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sample", type=int, default=8, help="time every n-th chunk")
    args = parser.parse_args()
    docs, claims_file = dataset("fastapi-docs") / "docs", dataset("scifact") / "queries.jsonl"
    claims = [json.loads(line)["text"] for line in claims_file.read_text().splitlines()][:512]
    folder = Path(bundled_model_path())
    cores = usable_cores()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = write_app(Path(tmp), docs, ["**/*.md"], chunker=CHUNKER)
        with RAG.from_config(config) as rag:
            chunks = chunk_texts(rag)[:: args.sample]
        for quantize in ("int8", "none"):
            encoders = {}
            for lanes in (1, cores):
                encoders[lanes] = OnnxEncoder(folder, Path(tmp) / "cache", quantize, lanes=lanes)
                encoders[lanes].start()
            name = "int8" if quantize == "int8" else "fp32"
            if quantize == "int8":
                results["documents_int8_chunks_per_s"] = rounds(
                    encoders, lambda e: per_second(e, chunks), args.repeats
                )
            results[f"queries_{name}_per_s"] = rounds(
                encoders, lambda e: per_second(e, claims), args.repeats
            )
            results[f"one_query_{name}_p50_ms"] = rounds(
                encoders, lambda e: one_at_a_time_ms(e, claims[:200]), args.repeats
            )
            print(f"{name}: {results}", file=sys.stderr)
    emit(
        {
            "benchmark": "onnx_lanes",
            "machine": machine(),
            "cores": cores,
            "timed_chunks": len(chunks),
            "claims": len(claims),
            **results,
        }
    )


if __name__ == "__main__":
    main()
