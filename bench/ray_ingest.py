"""Ingestion on Ray (``ingest.engine: ray``) against in-process ingestion, on N copies of the
FastAPI docs with the bundled MiniLM (torch), in one run:

    python bench/ray_ingest.py [--copies 10] [--repeats 3] [--workers 2] [--files N]

- chunks/s of a first ingestion into a fresh app, in-process (model loaded beforehand) and on
  a local Ray (Ray started beforehand; each run starts its actors, which load the model once
  each: that start is part of the Ray figure and is also reported alone), in rotating order;
- the chunk id sets of both, which must be identical;
- a Ray ingestion killed (SIGKILL of its driver process) after its first committed batch
  (64-chunk write batches, so that there are several), then re-run: its records and chunk
  ids must equal the in-process run's;
- the store's write rate (Chroma + BM25 + records, as the ingesting process writes), which
  bounds how far more Ray nodes can take one ingestion (see ``scaling``).

The copies sit in distinct folders, so their chunks differ by path. Figures are medians over
the repeats. Skips cleanly when ../shared/datasets/fastapi-docs is absent.
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

import numpy as np
from common import ROOT, dataset, emit, machine, median, write_app

from llmops import RAG
from llmops.pipelines.discovery import discover_files
from llmops.rag.indexing import FileRecord
from llmops.ray_cluster import LOCAL, connect

CHUNKER = {"type": "recursive", "chunk_size": 1000, "chunk_overlap": 200}
EMBEDDER = {"type": "sentence_transformers"}
KILLED_DRIVER = """
import sys, time
from llmops import RAG
from llmops.pipelines import ingest

ingest.BATCH_CHUNKS = 64  # several write batches even on a small corpus

def progress(p):
    print(f"progress {p.files_done}", flush=True)
    if p.files_done:
        time.sleep(600)  # the writes stall here until the kill

with RAG.from_config(sys.argv[1]) as rag:
    rag.ingest(progress=progress)
"""


def copies(source: Path, folder: Path, count: int, files: int | None) -> Path:
    """``count`` copies of the docs' Markdown files (the first ``files`` of them, in path
    order, when given) under ``folder/corpus/copyNN``."""
    corpus = folder / "corpus"
    pages = sorted(source.rglob("*.md"))[:files]
    for i in range(count):
        for page in pages:
            target = corpus / f"copy{i:02d}" / page.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(page, target)
    return corpus


def ray_section(address: str, workers: int) -> dict[str, Any]:
    return {"engine": "ray", "ray": {"address": address, "workers": workers, "batch_size": 16}}


def app(folder: Path, corpus: Path, name: str, ingest: dict[str, Any] | None = None) -> Path:
    target = folder / name
    target.mkdir()
    sections: dict[str, Any] = {"chunker": CHUNKER, "embedder": EMBEDDER}
    if ingest is not None:
        sections["ingest"] = ingest
    return write_app(target, corpus, ["**/*.md"], **sections)


Index = tuple[set[str], dict[str, tuple[str, tuple[str, ...]]]]
"""The store's chunk ids, and each file's record (content hash, chunk ids)."""


def index_of(rag: RAG) -> Index:
    c = rag.components
    active = c.records.active()
    assert active is not None
    records = c.records.files(active.collection)
    assert all(not r.pending_ids for r in records.values())
    assert c.store.count(active.collection) == len(c.store.ids(active.collection))
    return c.store.ids(active.collection), {
        k: (r.content_hash, r.chunk_ids) for k, r in records.items()
    }


def one_run(config: Path) -> tuple[dict[str, float], Index]:
    with RAG.from_config(config) as rag:  # starting loads the in-process model: not timed
        report = rag.ingest()
        index = index_of(rag)
    figures = {
        "chunks": report.chunks_embedded,
        "seconds": report.seconds,
        "chunks_per_s": report.chunks_embedded / report.seconds,
    }
    return figures, index


def actor_start_s(folder: Path, address: str, workers: int) -> float:
    """A Ray ingestion of one tiny file per worker: the actors' start and model load."""
    tiny = folder / "tiny"
    for i in range(workers):
        (tiny / f"t{i}").mkdir(parents=True)
        (tiny / f"t{i}" / "a.md").write_text(f"# Tiny {i}\n\nOne short page.\n")
    config = app(folder, tiny, "tiny-app", ray_section(address, workers))
    with RAG.from_config(config) as rag:
        return rag.ingest().seconds


def killed_and_rerun(config: Path) -> tuple[Index, int]:
    """SIGKILL a Ray ingestion after its first committed batch, re-run it; the index, and how
    many files the killed run had committed."""
    driver = subprocess.Popen(
        [sys.executable, "-c", KILLED_DRIVER, str(config)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert driver.stdout is not None
    for line in driver.stdout:
        if line.startswith("progress") and int(line.split()[1]) > 0:
            break
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    with RAG.from_config(config) as rag:
        building = rag.components.records.building()
        assert building is not None, "the killed run finished first"
        done = sum(
            bool(r.content_hash) for r in rag.components.records.files(building.collection).values()
        )
        rag.ingest()
        return index_of(rag), done


def write_rate(config: Path) -> dict[str, float]:
    """Chunks/s the ingesting process writes: Chroma upserts + BM25 + records, in 512-chunk
    batches of real chunks with random unit vectors (no embedding)."""
    with RAG.from_config(config) as rag:
        c = rag.components
        files = discover_files(c.sources).files
        chunks = [
            chunk
            for f in files
            if f.loader is not None
            for document in f.loader.load(f.path, f.key)
            for chunk in c.chunker.split(document)
        ]
        chunks = list({chunk.id: chunk for chunk in chunks}.values())
        vectors = np.random.default_rng(0).normal(size=(len(chunks), c.embedder.dimension))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        collection = "bench-write"
        started = time.perf_counter()
        for start in range(0, len(chunks), 512):
            part = chunks[start : start + 512]
            c.store.upsert(collection, part, vectors[start : start + 512])
            if c.sparse is not None:
                c.sparse.upsert(collection, part)
            c.records.commit(
                collection,
                [FileRecord(f"w{start}-{i}", "h", (ch.id,)) for i, ch in enumerate(part)],
            )
        seconds = time.perf_counter() - started
    return {"chunks": len(chunks), "chunks_per_s": len(chunks) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (one CPU each)")
    parser.add_argument(
        "--files", type=int, default=None, help="copy only the first N files (a busy machine)"
    )
    args = parser.parse_args()
    source = dataset("fastapi-docs") / "docs"
    ray = connect(LOCAL, num_cpus=os.cpu_count())
    address = str(ray.get_runtime_context().gcs_address)
    rounds: list[dict[str, dict[str, float]]] = []
    identical = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        corpus = copies(source, folder, args.copies, args.files)
        engines = {"in_process": None, "ray": ray_section(address, args.workers)}
        for number in range(args.repeats):
            order = list(engines)[number % 2 :] + list(engines)[: number % 2]
            results, indexes = {}, {}
            for engine in order:
                config = app(folder, corpus, f"r{number}-{engine}", engines[engine])
                results[engine], indexes[engine] = one_run(config)
                print(f"round {number + 1} {engine}: {results[engine]}", file=sys.stderr)
            identical &= indexes["in_process"] == indexes["ray"]
            rounds.append(results)
        start_s = actor_start_s(folder, address, args.workers)
        killed = app(folder, corpus, "killed", engines["ray"])
        rerun, committed = killed_and_rerun(killed)
        writes = write_rate(app(folder, corpus, "writes"))
    ray.shutdown()
    result = summary(rounds, writes["chunks_per_s"])
    emit(
        {
            "machine": machine(),
            "copies": args.copies,
            "files_per_copy": args.files or "all",
            "repeats": args.repeats,
            "ray_workers": args.workers,
            **result,
            "ray_actor_start_s": round(start_s, 1),
            "identical_chunk_ids_and_records": identical,
            "killed_then_rerun": {
                "files_committed_before_kill": committed,
                "files": len(indexes["in_process"][1]),
                "identical_to_in_process_run": rerun == indexes["in_process"],
            },
            "store_write": {k: round(v, 1) for k, v in writes.items()},
        }
    )


def summary(rounds: list[dict[str, dict[str, float]]], write_per_s: float) -> dict[str, Any]:
    """Medians over rounds (the ratio per round, then the median), and on paper: N nodes like
    this one, bounded by the ingesting process's write rate."""

    def med(engine: str) -> float:
        return round(median([r[engine]["chunks_per_s"] for r in rounds]), 1)

    ratio = median([r["ray"]["chunks_per_s"] / r["in_process"]["chunks_per_s"] for r in rounds])
    per_node = med("ray")
    return {
        "chunks": rounds[0]["in_process"]["chunks"],
        "rounds": rounds,
        "median_chunks_per_s": {"in_process": med("in_process"), "ray": per_node},
        "ray_vs_in_process": round(ratio, 3),
        "scaling_on_paper_chunks_per_s": {
            f"{n}_nodes": round(min(n * per_node, write_per_s), 1) for n in (1, 2, 4, 8, 16, 32)
        },
    }


if __name__ == "__main__":
    main()
