"""An eval suite over CLAP-NQ dev: retrieval, answer metrics and abstention accuracy on its 300
answerable and 300 unanswerable questions.

    python bench/eval_clapnq.py [--limit N] [--min-score X]

The corpus is the 600 gold Wikipedia passages (one text file each, one chunk per passage): an
unanswerable question's passage is on its topic but does not hold the answer, so retrieval
finds plausible text and the app must still abstain. The app is the offline default: bundled
MiniLM, BM25, hybrid search, the extractive generator (which abstains when no retrieved chunk
is similar enough to the question, ``min_score``). Prints one JSON object: each metric's mean
and 95% CI, latency, and the run folder (samples, report.md, report.html). Skips cleanly when
../shared/datasets/clapnq-dev is absent.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import dataset, emit, machine, write_app

from llmops.evaluation.datasets import Sample, read_clapnq, write_jsonl
from llmops.evaluation.scoring import SampleResult
from llmops.pipelines.eval_run import run_suite

METRICS = [
    "hit@1", "hit@4", "recall@4", "mrr@4", "ndcg@4",
    "token_f1", "rouge_l", "bleu", "semantic_similarity", "abstention_accuracy",
]  # fmt: skip


def balanced(samples: list[Sample], limit: int | None) -> list[Sample]:
    """The first ``limit / 2`` answerable and unanswerable questions (all without a limit)."""
    if limit is None:
        return samples
    answerable = [s for s in samples if s.answerable][: limit // 2]
    unanswerable = [s for s in samples if not s.answerable][: limit - len(answerable)]
    return answerable + unanswerable


def write_corpus(source: Path, folder: Path, limit: int | None) -> Path:
    """Passages as ``passages/<id>.txt`` and the questions in the llmops schema, their reference
    ids renamed to those files' document ids."""
    samples: list[Sample] = []
    passages = folder / "passages"
    passages.mkdir()
    for kind in ("answerable", "unanswerable"):
        path = source / "annotated_data" / "dev" / f"clapnq_dev_{kind}.jsonl"
        for sample in read_clapnq(path):
            title = str(sample.metadata.get("title", ""))
            text = "\n\n".join(sample.contexts) or _passage(path, sample.id)
            (passages / f"{sample.id}.txt").write_text(f"{title}\n\n{text}\n")
            ids = tuple(f"passages/{sample.id}.txt" for _ in sample.context_ids)
            samples.append(
                Sample(
                    sample.id,
                    sample.question,
                    sample.answers,
                    ids,
                    sample.contexts,
                    sample.answerable,
                    sample.metadata,
                )
            )
    qa = folder / "qa.jsonl"
    write_jsonl(balanced(samples, limit), qa)
    return qa


def _passage(path: Path, qid: str) -> str:
    """An unanswerable question's passage (the reader keeps it out of the references)."""
    import json

    for line in path.open():
        record = json.loads(line)
        if str(record["id"]) == qid:
            return "\n\n".join(p.get("text", "") for p in record.get("passages") or [])
    return ""


def abstentions(samples: list[SampleResult]) -> dict[str, float]:
    """How often the app abstained, per kind of question (the two halves of the accuracy)."""
    rates = {}
    for kind, answerable in (("on_answerable", True), ("on_unanswerable", False)):
        group = [s for s in samples if s.answerable == answerable]
        rates[kind] = round(sum(s.abstained for s in group) / len(group), 4) if group else 0.0
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="N questions, half of each kind")
    parser.add_argument("--min-score", type=float, default=None, help="extractive min_score")
    args = parser.parse_args()
    source = dataset("clapnq-dev")
    with tempfile.TemporaryDirectory(prefix="llmops-clapnq-eval-") as tmp:
        folder = Path(tmp)
        qa = write_corpus(source, folder, args.limit)
        generator: dict[str, Any] = {"type": "extractive"}
        if args.min_score is not None:
            generator["min_score"] = args.min_score
        app = write_app(
            folder, folder / "passages", ["**/*.txt"],
            chunker={"type": "recursive", "chunk_size": 20000, "chunk_overlap": 0},
            generator=generator,
        )  # fmt: skip
        suite = folder / "suite.yaml"
        suite.write_text(yaml.safe_dump({
            "name": "clapnq-dev", "app": str(app), "dataset": {"path": str(qa)},
            "metrics": METRICS, "concurrency": 4, "results_dir": str(folder / "results"),
        }))  # fmt: skip
        started = time.perf_counter()
        result = run_suite(suite, track=False)
        seconds = time.perf_counter() - started
        summary = result.summaries["baseline"]
        emit({
            "dataset": "clapnq-dev",
            "questions": int(summary.run["samples"]),
            "answerable": sum(1 for s in result.samples["baseline"] if s.answerable),
            "generator": generator,
            "metrics": {m: {k: round(v, 4) for k, v in s.as_dict().items() if k != "n"}
                        | {"n": s.n} for m, s in summary.metrics.items()},
            "abstained": abstentions(result.samples["baseline"]),
            "p50_latency_ms": round(summary.run["p50_latency_ms"], 1),
            "p95_latency_ms": round(summary.run["p95_latency_ms"], 1),
            "wall_s_including_indexing": round(seconds, 1),
            "machine": machine(),
        })  # fmt: skip


if __name__ == "__main__":
    main()
