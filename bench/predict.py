"""`/predict` throughput and latency against the usual ways to serve the same model.

    python bench/predict.py [--requests 300] [--rounds 2] [--levels 1 8 32] [--rows 1 256]

Needs the Adult model registered by `llmops train configs/adult.yaml` (this script trains a
quick one, 3 trials, and promotes it when there is no production version). Three servers of
the same registered version, each in its own process:

- llmops:  `llmops up configs/adult.yaml`, POST /predict/adult (rows checked against the
           schema, requests micro-batched on one thread);
- llmops-onnx: the same with `serving.runtime: onnx` (SERVING_RUNTIME=onnx): the version's
           ONNX export, logged and parity-checked at registration, run by ONNX Runtime;
- mlflow:  `mlflow models serve -m models:/adult@production --env-manager local`, POST
           /invocations with {"dataframe_records": rows} (MLflow's own scoring server);
- plain:   FastAPI with a handler calling `model.predict_proba` per request (the pattern most
           teams write first).

A minimal keep-alive client (bench/common.py) sends requests of 1 and 256 rows at
concurrency 1, 8 and 32; rounds alternate the servers and figures are medians over rounds.
Also reported: an in-process `predict_proba` of one row (median of 300 calls), the floor for
the concurrency-1 latency. Skips cleanly without ../shared/datasets/uci-adult.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    emit,
    load,
    machine,
    median,
    median_levels,
    start_server,
    stop_server,
)

CONFIG = ROOT / "configs" / "adult.yaml"
DATA = ROOT.parent / "shared" / "datasets" / "uci-adult" / "adult.test"
PLAIN_SERVER = """
import sys, mlflow.sklearn, pandas, uvicorn
from fastapi import FastAPI, Request
mlflow.set_tracking_uri(sys.argv[2])
model = mlflow.sklearn.load_model("models:/adult@production")
app = FastAPI()

@app.get("/ping")
def ping() -> dict:
    return {}

@app.post("/predict")
async def predict(request: Request) -> dict:
    rows = (await request.json())["rows"]
    return {"probabilities": model.predict_proba(pandas.DataFrame(rows)).tolist()}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def _llmops(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmops.cli.main", *args]


def ensure_model(tracking_uri: str) -> None:
    """A production version of 'adult' with its ONNX export (a quick 3-trial one when there
    is none)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias("adult", "production")
        if "onnx.max_abs_diff" in version.tags:
            return
    except mlflow.exceptions.MlflowException:
        pass
    subprocess.run(_llmops("train", str(CONFIG), "--trials", "3"), cwd=ROOT, check=True)
    subprocess.run(_llmops("models", "promote", "adult", "--tracking-uri", tracking_uri),
                   cwd=ROOT, check=True)  # fmt: skip


def rows(count: int) -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_csv(DATA, skipinitialspace=True, na_values=["?"]).drop(columns=["Y"])
    frame = frame.head(count).astype(object).where(frame.head(count).notna(), None)
    return list(frame.to_dict("records"))


def in_process_p50(tracking_uri: str) -> float:
    import mlflow.sklearn
    import pandas as pd

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.sklearn.load_model("models:/adult@production")
    one = pd.DataFrame(rows(1))
    times = []
    for _ in range(300):
        started = time.perf_counter()
        model.predict_proba(one)
        times.append((time.perf_counter() - started) * 1000)
    return round(median(times), 3)


def servers(
    tracking_uri: str, base: int
) -> dict[str, tuple[list[str], int, str, str, Any, dict[str, str]]]:
    """name → (command, port, ready path, predict path, body for a batch of rows, env)."""
    return {
        "llmops": (_llmops("up", str(CONFIG), "--port", str(base)), base, "/ready",
                   "/predict/adult", lambda r: {"rows": r}, {}),
        "llmops-onnx": (_llmops("up", str(CONFIG), "--port", str(base + 3)), base + 3,
                        "/ready", "/predict/adult", lambda r: {"rows": r},
                        {"SERVING_RUNTIME": "onnx"}),
        "mlflow": ([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                    "models:/adult@production", "--env-manager", "local", "-h", "127.0.0.1",
                    "-p", str(base + 1)], base + 1, "/ping", "/invocations",
                   lambda r: {"dataframe_records": r}, {}),
        "plain": ([sys.executable, "-c", PLAIN_SERVER, str(base + 2), tracking_uri], base + 2,
                  "/ping", "/predict", lambda r: {"rows": r}, {}),
    }  # fmt: skip


def measure(spec: Any, levels: list[int], sizes: list[int], requests: int) -> list[dict[str, Any]]:
    command, port, ready, path, body, env = spec
    proc = start_server(command, port, ready, env=env)
    try:
        out = []
        for size in sizes:
            payload = json.dumps(body(rows(size))).encode()
            total = requests if size == 1 else max(30, requests // 8)
            for level in levels:
                figures = asyncio.run(load(port, path, [payload], level, total))
                out.append({"rows": size, **figures})
        return out
    finally:
        stop_server(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--port", type=int, default=8711)
    args = parser.parse_args()
    if not DATA.exists():
        emit({"skipped": f"no dataset at {DATA}"})
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # `mlflow models serve` starts `uvicorn` by name: this environment's must be on the PATH
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    data_dir = (CONFIG.parent / "../.llmops/adult").resolve()
    tracking_uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    ensure_model(tracking_uri)
    specs = servers(tracking_uri, args.port)
    rounds: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in specs}
    for _ in range(args.rounds):
        for name, spec in specs.items():
            rounds[name].append(measure(spec, args.levels, args.rows, args.requests))
    results = {name: median_levels(runs) for name, runs in rounds.items()}
    emit({"machine": machine(), "in_process_predict_one_row_p50_ms": in_process_p50(tracking_uri),
          "results": results})  # fmt: skip


if __name__ == "__main__":
    main()
