"""Ingestion throughput on the FastAPI docs per embedder backend, against the bare model's
ceiling and the reference pipeline, in one run; and nDCG@10 on SciFact per backend.

    python bench/ingest.py [--repeats 3] [--no-scifact] [--runs onnx_int8 ceiling reference]

Each round, in a rotating order:
- llmops with the torch, onnx (fp32) and onnx int8 backends: a first ingestion of the corpus
  into a fresh app, model already loaded (ONNX export cached beforehand), then a re-ingestion
  of the unchanged corpus;
- the ceiling: a bare ``SentenceTransformer.encode`` (torch) of llmops' chunk texts, at
  batch 32 (sentence-transformers' default) and at batch 8 (llmops' torch batch on the CPU);
- the reference: LangChain ``RecursiveCharacterTextSplitter`` (1000/200) +
  ``HuggingFaceEmbeddings`` (the bundled MiniLM) + ``Chroma.from_documents`` into a temporary
  folder, model already loaded, run twice to show that a second run doubles the collection.
Figures are medians over rounds; ratios are taken per round, then the median.
nDCG@10 (dense search) on ../shared/datasets/scifact runs once per backend through
``llmops.pipelines.eval_retrieval``. Skips cleanly when the datasets are absent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import SHARED, dataset, emit, machine, median, write_app

from llmops import RAG
from llmops.pipelines.discovery import discover_files
from llmops.pipelines.eval_retrieval import WHOLE_DOCUMENT_CHUNKER, evaluate_beir
from llmops.rag.embedders.sentence_transformers import (
    SentenceTransformerEmbedder,
    bundled_model_path,
)

CHUNKER = {"type": "recursive", "chunk_size": 1000, "chunk_overlap": 200}
BACKENDS: dict[str, dict[str, Any]] = {
    "torch": {"type": "sentence_transformers"},
    "onnx_fp32": {"type": "sentence_transformers", "backend": "onnx"},
    "onnx_int8": {"type": "sentence_transformers", "backend": "onnx", "quantize": "int8"},
}
# the bare model at sentence-transformers' default batch (32), and at llmops' torch batch (8)
CEILINGS = {"ceiling": 32, "ceiling_batch8": 8}
RUNS = [*BACKENDS, *CEILINGS, "reference"]


def chunk_texts(rag: RAG) -> list[str]:
    texts = []
    for f in discover_files(rag.components.sources).files:
        if f.loader is not None:
            for document in f.loader.load(f.path, f.key):
                texts.extend(c.text for c in rag.components.chunker.split(document))
    return texts


def llmops_round(source: Path, embedder: dict[str, Any]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_app(Path(tmp), source, ["**/*.md"], chunker=CHUNKER, embedder=embedder)
        rag = RAG.from_config(config)
        started = time.perf_counter()
        with rag:  # starting loads the model (and exports it to ONNX the first time)
            start_s = time.perf_counter() - started
            first = rag.ingest()
            again = rag.ingest()
    return {
        "chunks": first.chunks_embedded,
        "chunks_per_s": first.chunks_embedded / first.seconds,
        "start_s": start_s,
        "first_ingest_s": first.seconds,
        "reingest_s": again.seconds,
        "reingest_embed_calls": again.embed_calls,
        "oversize_chunks": first.oversize_chunks,
    }


def export_once(runs: list[str]) -> None:
    """Export the ONNX backends' models into the cache before any timing."""
    for run in runs:
        settings = {k: v for k, v in BACKENDS.get(run, {}).items() if k != "type"}
        if settings.get("backend") == "onnx":
            embedder = SentenceTransformerEmbedder(SentenceTransformerEmbedder.Config(**settings))
            embedder.start()
            embedder.close()


def ceiling_round(model: Any, texts: list[str], batch_size: int) -> dict[str, float]:
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size, show_progress_bar=False)
    return {"chunks": len(texts), "chunks_per_s": len(texts) / (time.perf_counter() - started)}


def hugging_face_embeddings(model: str) -> Any:
    """The reference's embedder: langchain_huggingface when installed, else the community one."""
    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError:
        from langchain_community.embeddings import HuggingFaceEmbeddings
    return HuggingFaceEmbeddings(model_name=model)


def reference_round(source: Path, embeddings: Any) -> dict[str, float]:
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for _ in range(2):
            started = time.perf_counter()
            documents = [
                Document(
                    page_content=path.read_text(encoding="utf-8"), metadata={"source": str(path)}
                )
                for path in sorted(source.rglob("*.md"))
            ]
            chunks = splitter.split_documents(documents)
            store = Chroma.from_documents(
                chunks, embeddings, persist_directory=tmp, collection_name="reference"
            )
            runs.append((len(chunks), time.perf_counter() - started, store._collection.count()))
    (chunks_1, seconds_1, count_1), (_, seconds_2, count_2) = runs
    return {
        "chunks": chunks_1,
        "chunks_per_s": chunks_1 / seconds_1,
        "first_ingest_s": seconds_1,
        "second_run_s": seconds_2,
        "collection_after_first": count_1,
        "collection_after_second": count_2,
    }


def one_round(
    number: int, runs: list[str], source: Path, model: Any, embeddings: Any, texts: list[str]
) -> dict[str, dict[str, float]]:
    """Every run once, starting at a different run each round (drift hits each equally)."""
    order = runs[number % len(runs) :] + runs[: number % len(runs)]
    results = {}
    for run in order:
        if run in BACKENDS:
            results[run] = llmops_round(source, BACKENDS[run])
        elif run in CEILINGS:
            results[run] = ceiling_round(model, texts, CEILINGS[run])
        else:
            results[run] = reference_round(source, embeddings)
        print(
            f"round {number + 1} {run}: {results[run]['chunks_per_s']:.1f} chunks/s",
            file=sys.stderr,
        )
    return {run: results[run] for run in runs}


def scifact_ndcg(runs: list[str]) -> dict[str, Any]:
    """nDCG@10 of dense search on SciFact for torch and the backends in ``runs`` (and the
    ingestion's chunks/s there)."""
    folder = SHARED / "scifact"
    if not folder.exists():
        return {"skipped": f"dataset not found: {folder}"}
    results: dict[str, Any] = {}
    for name, embedder in BACKENDS.items():
        if name != "torch" and name not in runs:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            config = write_app(
                Path(tmp),
                Path(tmp),
                ["*.jsonl"],
                chunker=WHOLE_DOCUMENT_CHUNKER,
                embedder=embedder,
                sparse=None,
                retrieval={"mode": "dense"},
            )
            report = evaluate_beir(folder, config=config, modes=["dense"])
        results[name] = {
            "ndcg@10": round(report.metrics["dense"]["ndcg@10"], 4),
            "documents_per_s": round(report.documents / report.ingest.seconds, 1),
        }
        print(f"scifact {name}: {results[name]}", file=sys.stderr)
    torch = results["torch"]["ndcg@10"]
    for name in results:
        results[name]["points_vs_torch"] = round(100 * (results[name]["ndcg@10"] - torch), 2)
    return results


def summary(runs: list[str], rounds: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    def med(run: str, key: str = "chunks_per_s") -> float:
        return round(median([r[run][key] for r in rounds]), 1)

    def ratio(run: str, base: str) -> float:
        return round(median([r[run]["chunks_per_s"] / r[base]["chunks_per_s"] for r in rounds]), 2)

    backends = [run for run in runs if run in BACKENDS]
    return {
        "median_chunks_per_s": {run: med(run) for run in runs},
        "ratio_to_reference": {run: ratio(run, "reference") for run in runs if run != "reference"},
        "ratio_to_ceiling": {run: ratio(run, "ceiling") for run in backends},
        "median_reingest_fraction": {
            run: round(median([r[run]["reingest_s"] / r[run]["first_ingest_s"] for r in rounds]), 4)
            for run in backends
        },
        "reingest_embed_calls": max(r[b]["reingest_embed_calls"] for r in rounds for b in backends),
        "reference_collection_after_two_runs": rounds[0]["reference"]["collection_after_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-scifact", action="store_true", help="skip the nDCG@10 runs")
    parser.add_argument(
        "--scifact-only", action="store_true", help="only the nDCG@10 runs (torch and --runs)"
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=RUNS,
        default=RUNS,
        help="which runs to time (reference and ceiling are always kept: ratios need them)",
    )
    args = parser.parse_args()
    runs = [run for run in RUNS if run in {*args.runs, "ceiling", "reference"}]
    if args.scifact_only:
        emit({"benchmark": "ingest", "machine": machine(), "scifact_dense": scifact_ndcg(runs)})
        return
    source = dataset("fastapi-docs") / "docs"
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(bundled_model_path())
    embeddings = hugging_face_embeddings(bundled_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        config = write_app(Path(tmp), source, ["**/*.md"], chunker=CHUNKER)
        with RAG.from_config(config) as rag:
            texts = chunk_texts(rag)
    model.encode(texts[:64], batch_size=32)  # warm-up
    export_once(runs)
    rounds = [one_round(i, runs, source, model, embeddings, texts) for i in range(args.repeats)]
    emit(
        {
            "benchmark": "ingest",
            "machine": machine(),
            "corpus": str(source),
            "chunker": CHUNKER,
            "chunks": rounds[0]["ceiling"]["chunks"],
            "reference_chunks": rounds[0]["reference"]["chunks"],
            "oversize_chunks": max(r[b].get("oversize_chunks", 0) for r in rounds for b in runs),
            **summary(runs, rounds),
            "scifact_dense": {} if args.no_scifact else scifact_ndcg(runs),
            "rounds": rounds,
        }
    )


if __name__ == "__main__":
    main()
