"""/query throughput and latency at concurrency 1, 8 and 32, beside the reference design.

    python bench/query.py [--corpus scifact|guide] [--rounds 2] [--requests 300] [--workdir DIR]

Corpus ``scifact`` (default; ../shared/datasets/scifact, skipped when absent): the 5,183
abstracts, title and text, recursive chunker 1,000/200 (14,424 chunks); questions: the SciFact
claims. Corpus ``guide``: the shipped user guide (322 chunks) and questions about it.

The app is indexed once (``--workdir`` keeps the index between runs: a second ingestion of the
unchanged corpus costs nothing), then each round starts in turn, each as a subprocess driven by
a minimal keep-alive HTTP/1.1 client (so the load generator costs little CPU):

- **llmops** (``llmops up --no-ingest``) with the app's default retrieval (hybrid, top_k 5);
- **llmops dense**: the same app and index, ``retrieval.mode: dense``;
- the **reference design** (bench/reference_server.py: a FastAPI handler calling a LangChain
  retrieval-QA chain synchronously, Chroma MMR k 5 over the same collection, a fake LLM);
- with ``--baseline DIR`` (another checkout of this repository, e.g. ``git archive`` of an
  earlier commit), **baseline**: that checkout's ``llmops up`` over the same app and index, the
  "before" of a change, measured in the same rounds.

Ratios are taken per round, then the median. ``uptime``'s load average is printed before and
after: the figures mean little if other work shared the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from common import (
    GUIDE_QUESTIONS,
    ROOT,
    dataset,
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
from llmops.evaluation.beir import BeirFolder
from llmops.pipelines.eval_retrieval import write_shards

LEVELS = (1, 8, 32)
SCIFACT_CHUNKER = {"type": "recursive", "chunk_size": 1000, "chunk_overlap": 200}
GUIDE_CHUNKER = {"type": "markdown", "chunk_size": 800, "chunk_overlap": 100}
SCIFACT_LOADER = {"type": "json", "id_field": "beir_id", "metadata_fields": ["beir_id"]}


def scifact_app(folder: Path, mode: str) -> tuple[Path, list[str]]:
    """The SciFact app (corpus written as JSONL shards once) and the test claims."""
    beir = BeirFolder.open(dataset("scifact"), "test")
    corpus = folder / "corpus"
    if not corpus.exists():
        corpus.mkdir(parents=True)
        write_shards(beir, corpus)
    config = write_app(
        folder,
        corpus,
        ["*.jsonl"],
        name="scifact",
        chunker=SCIFACT_CHUNKER,
        retrieval={"top_k": 5, "mode": mode},
    )
    spec = yaml.safe_load(config.read_text())
    spec["sources"][0]["loaders"] = {".jsonl": SCIFACT_LOADER}
    named = config.with_name(f"bench-{mode}.yaml")
    named.write_text(yaml.safe_dump(spec, sort_keys=False))
    questions = list(beir.read_queries(set(beir.read_qrels())).values())
    return named, questions


def guide_app(folder: Path, mode: str) -> tuple[Path, list[str]]:
    config = write_app(
        folder,
        (ROOT / "datasets" / "guide").resolve(),
        ["**/*.md"],
        chunker=GUIDE_CHUNKER,
        retrieval={"top_k": 5, "mode": mode},
    )
    named = config.with_name(f"bench-{mode}.yaml")
    config.rename(named)
    return named, GUIDE_QUESTIONS


def measure(
    command: list[str], port: int, bodies: list[bytes], requests: int, root: Path = ROOT
) -> list[Any]:
    """Start a server, warm it up, load it at each concurrency level, stop it."""
    proc = start_server(command, port, root=root)
    try:
        asyncio.run(load(port, "/query", bodies, 4, 40))
        return [asyncio.run(load(port, "/query", bodies, c, requests)) for c in LEVELS]
    finally:
        stop_server(proc)


def ratios(runs: dict[str, list[Any]]) -> dict[str, float]:
    """The goals' figures for one round."""
    ours, dense, reference = runs["llmops"], runs["llmops_dense"], runs["reference"]
    baseline = runs.get("baseline")
    return {
        "c1_p50_over_reference": round(ours[0]["p50_ms"] / reference[0]["p50_ms"], 2),
        "c32_throughput_vs_reference": round(
            ours[2]["throughput_rps"] / reference[2]["throughput_rps"], 2
        ),
        "c32_p99_over_p50": round(ours[2]["p99_ms"] / ours[2]["p50_ms"], 2),
        "dense_c32_throughput_vs_reference": round(
            dense[2]["throughput_rps"] / reference[2]["throughput_rps"], 2
        ),
        **(
            {
                "c1_p50_over_baseline": round(ours[0]["p50_ms"] / baseline[0]["p50_ms"], 2),
                "c32_throughput_vs_baseline": round(
                    ours[2]["throughput_rps"] / baseline[2]["throughput_rps"], 2
                ),
            }
            if baseline
            else {}
        ),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", choices=["scifact", "guide"], default="scifact")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each server")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the index here")
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.workdir or Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        make = scifact_app if args.corpus == "scifact" else guide_app
        hybrid, questions = make(folder, "hybrid")
        dense, _ = make(folder, "dense")
        with RAG.from_config(hybrid) as rag:
            report = rag.ingest()
            active = rag.components.records.active()
            assert active is not None
            chunks = rag.components.store.count(active.collection)
        bodies = [json.dumps({"question": q}).encode() for q in questions]
        commands = {
            "llmops": llmops_up(hybrid, args.port),
            "llmops_dense": llmops_up(dense, args.port),
            "reference": [
                sys.executable,
                str(ROOT / "bench" / "reference_server.py"),
                str(folder / "data" / "chroma"),
                active.collection,
                str(args.port),
            ],
        }
        roots = {name: ROOT for name in commands}
        if args.baseline:
            commands["baseline"], roots["baseline"] = commands["llmops"], args.baseline.resolve()
        load_before = load_average()
        runs: dict[str, list[Any]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                runs[name].append(measure(command, args.port, bodies, args.requests, roots[name]))
        load_after = load_average()
    per_round = [ratios({name: r[i] for name, r in runs.items()}) for i in range(args.rounds)]
    emit(
        {
            "benchmark": "query",
            "machine": machine(),
            "load_average_before_after": [load_before, load_after],
            "corpus": args.corpus,
            "chunks": chunks,
            "ingest_s": round(report.seconds, 1),
            "rounds": args.rounds,
            "medians": {name: median_levels(r) for name, r in runs.items()},
            "ratios_median": {
                key: round(median([r[key] for r in per_round]), 2) for key in per_round[0]
            },
            "ratios_per_round": per_round,
            "all_rounds": runs,
        }
    )


if __name__ == "__main__":
    main()
