"""scikit-learn `predict_proba` against ONNX Runtime on the same exported model, in one process.

    python bench/onnx_predict.py [--estimators hist_gradient_boosting random_forest ...]
                                 [--repeats 300] [--rounds 5] [--rows 1 256]

For each estimator: the adult config's features (configs/adult.yaml) and the estimator with
fixed parameters (the config's own for hist_gradient_boosting; no search) fitted on
adult.data, exported with `llmops.models.onnx_export.export_onnx` (parity checked on the first
1,000 test rows), then the median latency of

- sklearn:        `pipeline.predict_proba(frame)` (what `/predict` calls),
- onnx:           `session.run` on ready [N, 1] tensors (what a Triton client sends),
- onnx+feeds:     building those tensors from the same DataFrame, then `session.run`,

for 1 and 256 rows of adult.test. Calls alternate in blocks between the three (rounds), so a
busy neighbour slows all of them alike; ratios are the figure to compare across machines.
Also: parity (max abs diff of probabilities, label agreement) on the whole test file, the
export time and the ONNX file size. Skips cleanly without ../shared/datasets/uci-adult.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from common import ROOT, SHARED, emit, machine, median

CONFIG = ROOT / "configs" / "adult.yaml"
DATA = SHARED / "uci-adult"
FIXED = {  # the config's own parameters for its estimator; a usual size for the others
    "hist_gradient_boosting": {},
    "logistic_regression": {},
    "random_forest": {"n_estimators": 200, "min_samples_leaf": 2},
    "lightgbm": {"n_estimators": 200},
}


def tables() -> tuple[Any, Any]:
    import pandas as pd

    def read(name: str) -> Any:
        frame = pd.read_csv(DATA / name, skipinitialspace=True, na_values=["?"])
        frame["Y"] = frame["Y"].str.rstrip(".")  # adult.test ends its labels with a dot
        return frame

    return read("adult.data"), read("adult.test")


def fitted(estimator: str, train: Any) -> Any:
    from llmops import registry
    from llmops.build import load_components
    from llmops.config import load_model_app_config
    from llmops.ml.features import model_pipeline

    app = load_model_app_config(CONFIG).app
    load_components()
    entry = registry.get("estimator", estimator)
    params = app.model.params if estimator == app.model.type else {}
    made = entry.factory(entry.config.model_validate(params)).make(app.task, FIXED[estimator])
    pipeline = model_pipeline(app.features, made)
    return pipeline.fit(train.drop(columns=["Y"]), train["Y"])


def timed(call: Callable[[], Any], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def latencies(model: Any, session: Any, rows: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Median ms per call of each way, calls alternating in ``rounds`` blocks."""
    from llmops.models.onnx_export import normalized, onnx_inputs

    frame = normalized(rows)
    feeds = onnx_inputs(frame, session)
    ways: dict[str, Callable[[], Any]] = {
        "sklearn": lambda: model.predict_proba(frame),
        "onnx": lambda: session.run(None, feeds),
        "onnx+feeds": lambda: session.run(None, onnx_inputs(frame, session)),
    }
    for call in ways.values():  # warm caches and thread pools
        timed(call, 5)
    repeats, rounds = args.repeats, args.rounds
    block = max(1, repeats // rounds)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, call in ways.items():
            times[name] += timed(call, block)
    p50 = {name: round(median(values), 4) for name, values in times.items()}
    return {
        "rows": len(rows),
        "calls_each": len(times["sklearn"]),
        "p50_ms": p50,
        "sklearn_over_onnx": round(p50["sklearn"] / p50["onnx"], 1),
        "sklearn_over_onnx_with_feeds": round(p50["sklearn"] / p50["onnx+feeds"], 1),
    }


def bench_session(onnx_bytes: bytes, threads: int) -> Any:
    """ONNX Runtime with its thread pool not spinning between calls: spinning threads would
    take the CPU from scikit-learn's OpenMP threads in the next block (22 ms instead of 3.6 ms
    for one row on 2 vCPUs)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def measure(estimator: str, train: Any, test: Any, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from llmops.models.onnx_export import export_onnx, normalized, onnx_inputs, session_for

    started = time.perf_counter()
    model = fitted(estimator, train)
    fit_s = time.perf_counter() - started
    features = test.drop(columns=["Y"])
    started = time.perf_counter()
    exported = export_onnx(model, features.head(1000))
    export_s = time.perf_counter() - started
    session = session_for(exported.onnx)  # parity: the library's own session
    timed_session = bench_session(exported.onnx, args.onnx_threads)
    label, probabilities = session.run(None, onnx_inputs(normalized(features), session))
    expected = model.predict_proba(normalized(features))
    return {
        "estimator": type(model.steps[-1][1]).__name__,
        "fit_s": round(fit_s, 1),
        "export_s": round(export_s, 2),
        "onnx_bytes": len(exported.onnx),
        "parity_all_test_rows": {
            "rows": len(features),
            "max_abs_diff": float(np.abs(expected - probabilities).max()),
            "labels_equal": float((label == model.predict(normalized(features))).mean()),
        },
        "latency": [latencies(model, timed_session, features.head(n), args) for n in args.rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--estimators", nargs="+", default=list(FIXED), choices=list(FIXED))
    parser.add_argument("--repeats", type=int, default=300, help="Calls per way and size.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 256])
    parser.add_argument(
        "--onnx-threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: cores)."
    )
    args = parser.parse_args()
    if not (DATA / "adult.data").exists():
        emit({"skipped": f"no dataset at {DATA}"})
        return
    import onnxruntime
    import sklearn

    train, test = tables()
    results = [measure(name, train, test, args) for name in args.estimators]
    versions = {"sklearn": sklearn.__version__, "onnxruntime": onnxruntime.__version__}
    settings = {"repeats": args.repeats, "rounds": args.rounds, "onnx_threads": args.onnx_threads}
    emit({"machine": machine(), "versions": versions, "settings": settings, "results": results})


if __name__ == "__main__":
    main()
