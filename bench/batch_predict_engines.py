"""`llmops predict` engines side by side: rows/s in this process, on a local Ray and as a
local Spark job, over the same UCI Adult rows and the same registered version.

    python bench/batch_predict_engines.py [--repeat 4] [--chunk-rows 10000]

Trains a quick Adult model (one search trial) in a temp folder, writes adult.data's feature
columns ``--repeat`` times over as Parquet and as CSV (a space after each comma, as the
public files have), then predicts each file with every engine: first a small file (Ray's
actors and Spark's JVM start there, untimed), then the whole file, timed end to end (read,
check, predict, write). Every engine's output is compared with the local one. Ray and Spark
get every CPU of the machine. Skips cleanly without ../shared/datasets/uci-adult.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from common import ROOT, dataset, emit, machine

from llmops.config import load_model_app_config
from llmops.ml.predict import model_columns
from llmops.pipelines.batch_engines import (
    BatchJob,
    Engine,
    EngineOptions,
    RegisteredModel,
    make_engine,
)
from llmops.pipelines.train import Training, app_registry
from llmops.ray_cluster import connect


def trained_app(folder: Path, adult: Path) -> Path:
    """configs/adult.yaml with its data in ``adult``, its state in ``folder``, one trial."""
    data = yaml.safe_load((ROOT / "configs" / "adult.yaml").read_text())
    data["data_dir"] = str(folder / "state")
    for split in ("train", "test"):
        data["data"][split]["path"] = str(adult / f"adult.{split if split == 'test' else 'data'}")
    data["search"]["n_trials"] = 1
    config = folder / "adult.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    report = Training(load_model_app_config(config)).run()
    assert report.version is not None, "the quick Adult model did not pass its gates"
    return config


def inputs(folder: Path, adult: Path, repeat: int) -> dict[str, Path]:
    rows = pd.read_csv(adult / "adult.data", skipinitialspace=True).drop(columns=["Y"])
    rows = pd.concat([rows] * repeat, ignore_index=True)
    files = {"parquet": folder / "rows.parquet", "csv": folder / "rows.csv"}
    rows.to_parquet(files["parquet"])
    files["csv"].write_text(rows.to_csv(index=False).replace(",", ", "))
    rows.head(2000).to_parquet(folder / "warm.parquet")
    return files


def job(config: Path, source: Path, output: Path, chunk_rows: int) -> tuple[BatchJob, Any]:
    loaded = load_model_app_config(config)
    registry = app_registry(loaded)
    version = registry.get("adult", "candidate")
    fitted = registry.load_version(version)
    model = RegisteredModel.of(registry, version)
    return BatchJob(
        loaded.app, model, model_columns(fitted, loaded.app), source, output, chunk_rows
    ), fitted


def timed(engine: Engine, config: Path, source: Path, output: Path, chunk_rows: int) -> float:
    batch, fitted = job(config, source, output, chunk_rows)
    started = time.perf_counter()
    make_engine(engine, EngineOptions(ray_address="local")).run(batch, fitted)
    return time.perf_counter() - started


def spark_session() -> Any:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master("local[*]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(os.cpu_count() or 1))
        .getOrCreate()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=4, help="adult.data copies in the input")
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    args = parser.parse_args()
    adult = dataset("uci-adult")
    results: dict[str, Any] = {"machine": machine(), "chunk_rows": args.chunk_rows}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = trained_app(folder, adult)
        files = inputs(folder, adult, args.repeat)
        connect("local", num_cpus=os.cpu_count())
        spark = spark_session()
        rows = len(pd.read_parquet(files["parquet"], columns=["age"]))
        results["rows"] = rows
        for kind, source in files.items():
            local_out = folder / f"{kind}-local.parquet"
            figures: dict[str, Any] = {}
            for engine in Engine:
                out = folder / f"{kind}-{engine.value}.parquet"
                timed(engine, config, folder / "warm.parquet", folder / "warm-out.parquet", 1000)
                seconds = timed(engine, config, source, out, args.chunk_rows)
                same = engine is Engine.LOCAL or pd.read_parquet(out)["prediction"].equals(
                    pd.read_parquet(local_out)["prediction"]
                )
                figures[engine.value] = {
                    "seconds": round(seconds, 2),
                    "rows_per_s": round(rows / seconds),
                    "same_predictions_as_local": bool(same),
                }
            results[kind] = figures
        spark.stop()
    emit(results)


if __name__ == "__main__":
    main()
