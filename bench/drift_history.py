"""What keeping drift checks across restarts costs: one ``DriftHistory.add`` (a SQLite insert
and the retention's deletes, fully synced) against the drift check it keeps, and reading the
newest 500 kept checks (what ``GET /drift`` returns) against the same check.

    python bench/drift_history.py [--rounds 30] [--kept 5000]

The check is the real detector (``compare``: KS and PSI per signal, an MMD permutation test
on 384-d embeddings, 500 permutations) on synthetic windows of 300 reference and 200 current
queries; the history already holds ``--kept`` checks (its retention at its default). Rounds
alternate check, add and read; medians and their ratios are printed as JSON with the load
average (other processes on the machine make absolute times noisy, ratios less so).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import emit, machine, median

from llmops.monitoring.drift import Window, compare
from llmops.monitoring.drift_history import HISTORY_FILE, DriftHistory
from llmops.monitoring.drift_monitor import REPORT_CHECKS

SIGNALS = ("query_chars", "top_score", "sources_above", "answer_chars", "latency_ms")


def window(rng: np.random.Generator, size: int, shift: float) -> Window:
    signals = {name: rng.normal(shift, 1.0, size) for name in SIGNALS}
    vectors = rng.normal(shift, 1.0, (size, 384))
    return Window(signals, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--kept", type=int, default=5000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    reference, current = window(rng, 300, 0.0), window(rng, 200, 0.1)
    timings: dict[str, list[float]] = {"check": [], "add": [], "read": []}
    with tempfile.TemporaryDirectory() as folder:
        history = DriftHistory(Path(folder) / HISTORY_FILE, args.kept, 90)
        history.open()
        result = compare(reference, current, 0.01, 500)
        for n in range(args.kept):
            history.add({"time": time.time() - args.kept + n, "alert": False, **result.to_dict()})
        for _ in range(args.rounds):
            started = time.perf_counter()
            result = compare(reference, current, 0.01, 500)
            timings["check"].append(time.perf_counter() - started)
            started = time.perf_counter()
            history.add({"time": time.time(), "alert": False, **result.to_dict()})
            timings["add"].append(time.perf_counter() - started)
            started = time.perf_counter()
            history.recent(REPORT_CHECKS)
            timings["read"].append(time.perf_counter() - started)
        kept = history.count()
        history.close()  # the WAL is checkpointed into the file
        size = (Path(folder) / HISTORY_FILE).stat().st_size
    ms = {name: round(median(values) * 1000, 2) for name, values in timings.items()}
    emit(
        {
            "benchmark": "drift_history",
            "machine": machine(),
            "rounds": args.rounds,
            "checks_kept": kept,
            "file_kib_per_check": round(size / 1024 / kept, 2),
            "median_ms": ms,
            "add_over_check": round(ms["add"] / ms["check"], 4),
            "read_newest_over_check": round(ms["read"] / ms["check"], 4),
        }
    )


if __name__ == "__main__":
    main()
