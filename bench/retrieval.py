"""Retrieval quality and latency of dense, BM25 and hybrid search, on two BEIR-format collections.

    python bench/retrieval.py [--limit N] [--workdir DIR] [--train-embedder]

- SciFact (../shared/datasets/scifact, the BEIR files): 5,183 abstracts, 300 test queries.
- CLAP-NQ dev as a BEIR folder, built here from ../shared/datasets/clapnq-dev: the 600 gold
  Wikipedia passages of its answerable and unanswerable questions form the corpus, the 300
  answerable questions the queries, each judged against its own gold passage. A second domain
  (general knowledge, natural questions) to check that the defaults were not fitted to SciFact.

Each collection is indexed once by the normal ingestion (app defaults, one chunk per document)
and searched in every mode on that one index: dense, bm25, hybrid (the default settings),
and hybrid with each fusion: rrf (reciprocal rank, k = 60), weighted (min-max normalised
scores, 0.5 each) and adaptive (weights from each ranking's evidence per query). Latency is the
median time of one search (top 100), one query at a time, in the same run.

On SciFact it also tunes as `llmops eval retrieval --tune --split train` does, on the same
index: settings chosen on the train queries, then compared with the defaults on the test
queries (nDCG@10, paired bootstrap 95% CI); with ``--train-embedder`` as
`--tune --train-embedder` does: the embedder is also fine-tuned on three quarters of the train
queries (3 epochs), the corpus indexed again with it, and the setting chosen on the other
quarter. ``--workdir`` keeps the indexes for the next run (which then only searches). Skips a
collection whose dataset is absent.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from common import SHARED, emit, machine

from llmops.pipelines.eval_retrieval import evaluate_beir
from llmops.pipelines.tune_embedder import EmbedderTuning, tune_beir_with_embedder
from llmops.pipelines.tune_retrieval import BeirTuning, tune_beir

MODES = ["dense", "bm25", "hybrid", "hybrid_rrf", "hybrid_weighted", "hybrid_adaptive"]


def clapnq_as_beir(source: Path, folder: Path) -> Path:
    """Write CLAP-NQ dev as a BEIR folder: corpus, answerable queries, qrels/test.tsv."""
    corpus: dict[str, dict[str, str]] = {}
    queries, qrels = [], []
    for kind in ("answerable", "unanswerable"):
        for line in (source / "annotated_data" / "dev" / f"clapnq_dev_{kind}.jsonl").open():
            record = json.loads(line)
            for i, passage in enumerate(record["passages"]):
                pid = f"{record['id']}-{i}"
                corpus[pid] = {"_id": pid, "title": passage["title"], "text": passage["text"]}
                if kind == "answerable":
                    qrels.append(f"{record['id']}\t{pid}\t1")
            if kind == "answerable":
                queries.append({"_id": record["id"], "text": record["input"]})
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(c) + "\n" for c in corpus.values()))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels))
    return folder


def measure(folder: Path, limit: int | None, workdir: Path | None) -> dict[str, Any]:
    report = evaluate_beir(folder, modes=MODES, limit=limit, workdir=workdir)
    best_single = max(report.metrics["dense"]["ndcg@10"], report.metrics["bm25"]["ndcg@10"])
    hybrid = report.metrics["hybrid"]["ndcg@10"]
    return {
        "documents": report.documents,
        "queries": report.queries,
        "metrics": {
            mode: {k: round(v, 4) for k, v in m.items()} for mode, m in report.metrics.items()
        },
        "search_p50_ms": {mode: round(ms, 2) for mode, ms in report.latency_ms.items()},
        "hybrid_over_dense_latency": round(
            report.latency_ms["hybrid"] / report.latency_ms["dense"], 2
        ),
        "hybrid_ndcg_gain_over_best_single": round(hybrid - best_single, 4),
        "hybrid_ndcg_gain_over_rrf": round(hybrid - report.metrics["hybrid_rrf"]["ndcg@10"], 4),
    }


def tune(folder: Path, limit: int | None, workdir: Path, train_embedder: bool) -> dict[str, Any]:
    if train_embedder:
        embedder = EmbedderTuning(workdir / "fine-tuned-embedder")
        source = BeirTuning(folder, limit=limit, workdir=workdir)
        report = tune_beir_with_embedder(source, embedder)
    else:
        report = tune_beir(folder, split="train", limit=limit, workdir=workdir)
    return {
        "tuned_on": report.tuned_on,
        "evaluated_on": report.evaluated_on,
        "chosen": report.yaml_section,
        "embedder": report.embedder_section,
        "embedder_on_tuning_queries": (
            report.embedder_gain.as_dict() if report.embedder_gain is not None else None
        ),
        "ndcg@10_default_vs_tuned": {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in report.comparison.as_dict().items()
        },
        "best_tuning_trials": [
            {**t.settings, "ndcg@10": round(t.score, 4)} for t in report.trials[:5]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="first N queries only")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the indexes here (default: temporary)"
    )
    parser.add_argument(
        "--train-embedder", action="store_true", help="tune with a fine-tuned embedder too"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {"benchmark": "retrieval", "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        results.update(
            scifact(args.limit, work / "scifact", args.train_embedder),
            clapnq=clapnq(args.limit, work),
        )
    emit(results)


def scifact(limit: int | None, workdir: Path, train_embedder: bool) -> dict[str, Any]:
    folder = SHARED / "scifact"
    if not folder.exists():
        return {"scifact": {"skipped": f"dataset not found: {folder}"}}
    tuning = tune(folder, limit, workdir, train_embedder)
    return {"scifact": measure(folder, limit, workdir), "tune": tuning}


def clapnq(limit: int | None, work: Path) -> dict[str, Any]:
    if (SHARED / "clapnq-dev").exists():
        folder = clapnq_as_beir(SHARED / "clapnq-dev", work / "clapnq-beir")
        return measure(folder, limit, work / "clapnq")
    return {"skipped": f"dataset not found: {SHARED / 'clapnq-dev'}"}


if __name__ == "__main__":
    main()
