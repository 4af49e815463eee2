"""A second version in shadow on UCI Adult: what the shadow costs the served requests, how
often the two versions agree, and how each does on the labelled live traffic.

    python bench/model_shadow.py [--rows 2000] [--concurrency 8] [--trials 3]

Two versions of the `adult` model app (configs/adult.yaml) in a fresh registry: version 1
(hist gradient boosting, `--trials` Optuna trials) in production and version 2 (a random
forest) as the candidate. `llmops up` serves them twice: plainly, then with
`routing: {strategy: shadow}` (the candidate predicts every request in the background).
1-row requests of adult.test at `--concurrency` measure both; then `--rows` rows of
adult.test go through the shadowed server one by one, their true labels are posted to
/labels, and /models and /experiments report the live accuracy and ROC AUC of both versions
and their agreement. Skips cleanly without ../shared/datasets/uci-adult.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import yaml
from common import ROOT, emit, llmops_up, load, machine, start_server, stop_server

from llmops.config import load_model_app_config
from llmops.pipelines.train import Training, app_registry

DATA = ROOT.parent / "shared" / "datasets" / "uci-adult"
PORT = 8771
SHADOW = {
    "name": "adult-shadow",
    "strategy": "shadow",
    "variants": {"production": {"alias": "production"}, "candidate": {"alias": "candidate"}},
    "shadow": {"variant": "candidate"},
}


def write_configs(folder: Path, trials: int) -> tuple[Path, Path, Path]:
    """The production app, the candidate's (a random forest) and the shadowed app."""
    app = yaml.safe_load((ROOT / "configs" / "adult.yaml").read_text())
    app["data_dir"] = str(folder / "state")
    app["search"]["n_trials"] = trials
    app["serving"] = {"port": PORT, "max_batch_rows": 256}
    forest = {**app, "model": {"type": "random_forest", "params": {"n_estimators": 100}}}
    forest["search"] = {
        "n_trials": trials,
        "cv_folds": 3,
        "space": {"min_samples_leaf": {"low": 1, "high": 20, "integer": True}},
    }
    forest["gates"] = ["roc_auc >= 0.85"]
    paths = []
    for name, config in (
        ("adult", app),
        ("forest", forest),
        ("shadow", {**app, "routing": SHADOW}),
    ):
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        paths.append(path)
    return paths[0], paths[1], paths[2]


def test_rows() -> tuple[list[dict[str, Any]], list[str]]:
    frame = pd.read_csv(DATA / "adult.test", skipinitialspace=True, na_values=["?"])
    truth = frame.pop("Y").str.rstrip(".").tolist()
    rows = [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]
    return rows, truth


async def labelled_traffic(rows: list[dict[str, Any]], truth: list[str]) -> dict[str, Any]:
    """Each row predicted (one request each, 8 at a time), its true label posted after."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", timeout=60) as client:
        gate = asyncio.Semaphore(8)

        async def predict(row: dict[str, Any]) -> str:
            async with gate:
                answer = await client.post("/predict/adult", json={"rows": [row]})
                return str(answer.json()["request_id"])

        ids = await asyncio.gather(*(predict(row) for row in rows))
        await asyncio.sleep(2.0)  # the last shadow runs finish
        labels = [{"request_id": i, "label": y} for i, y in zip(ids, truth, strict=True)]
        for start in range(0, len(labels), 1000):
            await client.post("/labels", json={"labels": labels[start : start + 1000]})
        models = (await client.get("/models")).json()
        experiments = (await client.get("/experiments")).json()
    return {"models": models, "experiments": experiments}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    if not DATA.exists():
        emit({"skipped": f"no dataset at {DATA}"})
        return
    os.environ["ADULT_DIR"] = str(DATA)
    rows, truth = test_rows()
    with tempfile.TemporaryDirectory() as tmp:
        plain, forest, shadowed = write_configs(Path(tmp), args.trials)
        first = Training(load_model_app_config(plain)).run()
        app_registry(load_model_app_config(plain)).promote("adult")
        second = Training(load_model_app_config(forest)).run()
        bodies = [json.dumps({"rows": [row]}).encode() for row in rows[:500]]
        latency = {}
        for name, config in (("plain", plain), ("shadow", shadowed)):
            server = start_server(llmops_up(config, PORT), PORT)
            try:
                asyncio.run(load(PORT, "/predict/adult", bodies, args.concurrency, 100))  # warm
                latency[name] = asyncio.run(
                    load(PORT, "/predict/adult", bodies, args.concurrency, args.requests)
                )
                if name == "shadow":
                    live = asyncio.run(labelled_traffic(rows[: args.rows], truth[: args.rows]))
            finally:
                stop_server(server)
    variants = live["models"]["variants"]
    shadow = live["experiments"]["variants"]["candidate"]["shadow"]
    emit(
        {
            "machine": machine(),
            "versions": {
                "production": {"version": 1, "test": first.metrics},
                "candidate": {"version": 2, "test": second.metrics},
            },
            "latency_1_row": latency,
            "live": {name: variants[name]["live"] for name in ("production", "candidate")},
            "shadow": shadow,
        }
    )


if __name__ == "__main__":
    main()
