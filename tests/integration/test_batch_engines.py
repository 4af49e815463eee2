"""Batch prediction on Ray and as a Spark job gives the file the in-process engine gives, row
for row; a bad row is named by its row in the file; a missing extra or an unreachable cluster
is said plainly. An eval run answered on Ray actors scores as one answered in-process. One
local Ray and one local Spark session serve the whole module."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.config import load_model_app_config
from llmops.errors import ComponentError, InvalidRows, MissingDependency
from llmops.ml.predict import model_columns
from llmops.pipelines.batch_engines import (
    BatchJob,
    Engine,
    EngineOptions,
    RegisteredModel,
    make_engine,
)
from llmops.pipelines.eval_ray import RayAnswering
from llmops.pipelines.eval_run import run_suite
from llmops.pipelines.train import app_registry
from llmops.ray_cluster import connect
from tests.conftest import HASHING, ConfigWriter
from tests.eval_suite_data import QA, write_suite
from tests.ml.adult_like import adult_like
from tests.ml.conftest import train
from tests.ml.test_train import write_app

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ENGINES = [Engine.RAY, Engine.SPARK]


@pytest.fixture(scope="module")
def model_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = write_app(tmp_path_factory.mktemp("engines"), trials=1)
    train(config)
    return config


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = connect("local", num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture
def clusters(ray_cluster: Any, spark: Any) -> None:
    """Both engines' clusters up (the engines find them already open)."""


def job_for(
    config: Path, source: Path, output: Path, chunk_rows: int = 400
) -> tuple[BatchJob, Any]:
    loaded = load_model_app_config(config)
    registry = app_registry(loaded)
    version = registry.get("adult", "candidate")
    fitted = registry.load_version(version)
    columns = model_columns(fitted, loaded.app)
    model = RegisteredModel.of(registry, version)
    return BatchJob(loaded.app, model, columns, source, output, chunk_rows), fitted


def predicted(engine: Engine, config: Path, source: Path, output: Path) -> pd.DataFrame:
    """``llmops predict`` with ``--engine``; the Ray and Spark it finds are the module's."""
    result = CliRunner().invoke(
        app, ["predict", str(config), "-i", str(source), "-o", str(output), "-m", "adult@candidate",
              "--chunk-rows", "400", "--engine", engine.value, "--ray-address", "local"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    predictions = pd.read_parquet(output)
    assert f"wrote {len(predictions)} predictions" in result.output
    return predictions


def write_rows(rows: pd.DataFrame, path: Path) -> Path:
    """CSV as the public Adult files are written: a space after each comma."""
    if path.suffix == ".parquet":
        rows.to_parquet(path)
    else:
        path.write_text(rows.to_csv(index=False).replace(",", ", "))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_ray_and_spark_predict_the_file_as_the_local_engine_does(
    model_app: Path, clusters: None, tmp_path: Path, suffix: str
) -> None:
    source = write_rows(adult_like(1500, seed=21).drop(columns=["Y"]), tmp_path / f"in{suffix}")
    local = predicted(Engine.LOCAL, model_app, source, tmp_path / "local.parquet")
    assert len(local) == 1500 and local["prediction"].nunique() == 2
    for engine in ENGINES:
        other = predicted(engine, model_app, source, tmp_path / f"{engine.value}.parquet")
        assert list(other.columns) == list(local.columns), engine
        assert list(other["prediction"]) == list(local["prediction"]), engine
        pd.testing.assert_frame_equal(other, local, check_dtype=False, rtol=1e-9)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_bad_row_is_named_by_its_row_in_the_file(
    model_app: Path, clusters: None, tmp_path: Path, engine: Engine
) -> None:
    rows = adult_like(1200, seed=22).drop(columns=["Y"])
    rows.loc[1034, "age"] = 300
    source = write_rows(rows, tmp_path / "in.csv")
    job, fitted = job_for(model_app, source, tmp_path / "out.parquet")
    with pytest.raises(InvalidRows) as raised:
        make_engine(engine, EngineOptions()).run(job, fitted)
    assert [(p.row, p.column) for p in raised.value.problems] == [(1034, "age")]
    assert not job.output.exists()


@pytest.mark.parametrize(
    ("engine", "module", "extra"),
    [(Engine.RAY, "ray", "ray"), (Engine.SPARK, "pyspark", "spark")],
)
def test_a_missing_extra_names_the_pip_install(
    model_app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: Engine,
    module: str, extra: str,
) -> None:  # fmt: skip
    for name in [m for m in sys.modules if m == module or m.startswith(f"{module}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)
    source = write_rows(adult_like(200, seed=23).drop(columns=["Y"]), tmp_path / "in.csv")
    job, fitted = job_for(model_app, source, tmp_path / "out.parquet")
    with pytest.raises(MissingDependency, match=rf"pip install 'llmops\[{extra}\]'"):
        make_engine(engine, EngineOptions()).run(job, fitted)


def test_an_unreachable_ray_address_is_said_with_the_fix(
    model_app: Path, ray_cluster: Any, tmp_path: Path
) -> None:
    source = write_rows(adult_like(200, seed=24).drop(columns=["Y"]), tmp_path / "in.csv")
    job, fitted = job_for(model_app, source, tmp_path / "out.parquet")
    engine = make_engine(Engine.RAY, EngineOptions(ray_address="127.0.0.1:1"))
    with pytest.raises(
        ComponentError, match=r"cannot connect to Ray at '127\.0\.0\.1:1'.*ray start"
    ):
        engine.run(job, fitted)
    assert not job.output.exists()


def test_an_eval_run_answered_on_ray_scores_as_one_answered_in_process(
    ray_cluster: Any, tmp_path: Path, write_config: ConfigWriter
) -> None:
    config = write_config(embedder=HASHING, generator={"type": "extractive", "min_score": 0.3})
    suite = write_suite(tmp_path, config, variants=[{"name": "top1", "retrieval": {"top_k": 1}}])
    here = run_suite(suite, track=False)
    there = run_suite(suite, track=False, answering=RayAnswering(suite, "local", actors=2))
    assert set(there.samples) == {"baseline", "top1"} and there.run_dir != here.run_dir
    for variant, results in here.samples.items():
        expected = [{**r.as_dict(), "latency_ms": None} for r in results]
        got = [{**r.as_dict(), "latency_ms": None} for r in there.samples[variant]]
        assert got == expected, variant
        assert [r.id for r in results] == [q["id"] for q in QA]
        summary, ray_summary = here.summaries[variant], there.summaries[variant]
        for metric in here.metric_names:
            assert ray_summary.metrics[metric].mean == summary.metrics[metric].mean, metric
    assert any(r.answer for r in there.samples["baseline"])
    assert there.passed == here.passed
