"""Tabular drift detection on UCI Adult: is a shifted slice flagged, and how often does an
unshifted one raise a false alarm?

    python bench/drift_tabular.py [--slices 100] [--window 500] [--alpha 0.01] [--min-psi 0.1]

Reference: the features of adult.data (the training rows). Shifted: rows of adult.test with
age >= 50, in windows of growing size (the smallest that is flagged is reported). Unshifted:
``--slices`` random windows of ``--window`` rows of adult.test (same population as the
training rows): each alarm there is a false alarm. Same detector and settings as the served
model's drift checks (llmops.monitoring.table_drift). Skips without ../shared.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from common import ROOT, emit, machine

from llmops.monitoring.table_drift import compare_tables

DATA = ROOT.parent / "shared" / "datasets" / "uci-adult"
NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "marital-status", "occupation", "relationship", "race", "sex",
               "native-country"]  # fmt: skip


def read(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name, skipinitialspace=True, na_values=["?"]).drop(columns=["Y"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--min-psi", type=float, default=0.1)
    args = parser.parse_args()
    if not DATA.exists():
        emit({"skipped": f"no dataset at {DATA}"})
        return
    reference, test = read("adult.data"), read("adult.test")
    settings = {"alpha": args.alpha, "min_psi": args.min_psi}

    def check(window: pd.DataFrame) -> object:
        return compare_tables(reference, window, NUMERIC, CATEGORICAL, **settings)

    old = test[test["age"] >= 50].sample(frac=1.0, random_state=0)
    flagged_at = None
    for size in (100, 200, 300, 400, 500):
        result = check(old.head(size))
        if result.detected:  # type: ignore[attr-defined]
            flagged_at, drifted = size, result.drifted  # type: ignore[attr-defined]
            break
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    alarms = sum(
        check(test.iloc[rng.choice(len(test), args.window, replace=False)]).detected  # type: ignore[attr-defined]
        for _ in range(args.slices)
    )
    emit(
        {
            "machine": machine(),
            "settings": {**settings, "window": args.window},
            "shifted_age_ge_50": {
                "flagged_at_rows": flagged_at,
                "drifted": drifted if flagged_at else [],
            },
            "unshifted": {"slices": args.slices, "false_alarms": int(alarms)},
            "seconds_per_check": round((time.perf_counter() - started) / args.slices, 3),
        }
    )


if __name__ == "__main__":
    main()
