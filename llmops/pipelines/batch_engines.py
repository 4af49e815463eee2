"""Where batch prediction runs: in this process (``local``, chunked and resumable), on Ray
(``ray``) or as a Spark job (``spark``). Every engine reads the same CSV or Parquet file,
checks each row against the app's schema, predicts with one registered version (resolved
here, on the driver, so every worker loads the same one) and writes the same Parquet file:
the input columns, in the input's row order, plus ``prediction`` and ``probability_<class>``.

    engine = make_engine("ray", EngineOptions(ray_address="auto"))
    report = engine.run(job, fitted)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from llmops.config.model_app import ModelAppConfig
from llmops.deps import require
from llmops.errors import InvalidRows, RowProblem
from llmops.ml.predict import MAX_PROBLEMS
from llmops.models.registry import ModelRegistry, ModelVersion
from llmops.pipelines.batch_predict import (
    BatchReport,
    Progress,
    predict_file,
    predicted_chunk,
    write_joined,
)

PROBLEMS = "_llmops_row_problems"
"""A distributed batch's column of each row's schema problems (JSON), dropped on writing."""


class Engine(StrEnum):
    """The engines ``llmops predict --engine`` offers."""

    LOCAL = "local"
    RAY = "ray"
    SPARK = "spark"


@dataclass(frozen=True)
class EngineOptions:
    """Where the distributed engines run."""

    ray_address: str = "auto"  # "auto", "local" or a cluster address (ray://head:10001)
    spark_master: str = "local[*]"  # a Spark master URL


@dataclass(frozen=True)
class RegisteredModel:
    """A registered version resolved on the driver: what each worker loads (once)."""

    tracking_uri: str
    artifact_location: str | None
    version: ModelVersion

    @classmethod
    def of(cls, registry: ModelRegistry, version: ModelVersion) -> RegisteredModel:
        return cls(registry.tracking_uri, registry.artifact_location, version)

    def load(self) -> Any:
        return ModelRegistry(self.tracking_uri, self.artifact_location).load_version(self.version)


@dataclass(frozen=True)
class BatchJob:
    """One file to predict: the app (its schema), the version, its columns, input, output."""

    app: ModelAppConfig
    model: RegisteredModel
    columns: list[str]
    source: Path
    output: Path
    chunk_rows: int

    @property
    def csv(self) -> bool:
        return self.source.suffix.lower() != ".parquet"


class BatchEngine(Protocol):
    """Runs a batch job; ``fitted`` is the driver's copy of the job's model."""

    def run(self, job: BatchJob, fitted: Any, progress: Progress | None = None) -> BatchReport:
        """Predict ``job.source`` into ``job.output``; InvalidRows (numbering rows in the
        file) when a row breaks the app's schema, and then no output is written."""
        ...


class LocalEngine:
    """In this process, chunk by chunk, each chunk kept as a part: a killed run resumes."""

    def run(self, job: BatchJob, fitted: Any, progress: Progress | None = None) -> BatchReport:
        return predict_file(
            job.app, fitted, job.columns, job.source, job.output, job.chunk_rows, progress
        )


def _ray(options: EngineOptions) -> BatchEngine:
    from llmops.pipelines.batch_ray import RayEngine

    return RayEngine(options.ray_address)


def _spark(options: EngineOptions) -> BatchEngine:
    from llmops.pipelines.batch_spark import SparkEngine

    return SparkEngine(options.spark_master)


ENGINES: dict[Engine, Callable[[EngineOptions], BatchEngine]] = {
    Engine.LOCAL: lambda options: LocalEngine(),
    Engine.RAY: _ray,
    Engine.SPARK: _spark,
}


def make_engine(engine: Engine, options: EngineOptions) -> BatchEngine:
    return ENGINES[engine](options)


# worker side ---------------------------------------------------------------------------------
def marked_chunk(job: BatchJob, model: Any, chunk: Any) -> Any:
    """``chunk`` predicted, for a distributed engine: a row breaking the schema does not stop
    the worker (which cannot know its row number in the file) but is marked in ``PROBLEMS``,
    for the driver to report once the rows are back in order."""
    if job.csv:
        chunk = _as_pandas_reads_csv(chunk)
    if not len(chunk):  # a batch can come empty; predicting needs a row
        return chunk.assign(**{PROBLEMS: []})
    try:
        out = predicted_chunk(job.app, model, job.columns, chunk)
        out[PROBLEMS] = None
        return out
    except InvalidRows as exc:
        found: dict[int, list[tuple[str | None, str]]] = {}
        for problem in exc.problems:
            found.setdefault(problem.row or 0, []).append((problem.column, problem.message))
        out = chunk.reset_index(drop=True).copy()
        out[PROBLEMS] = [json.dumps(found[i]) if i in found else None for i in range(len(out))]
        return out


def _as_pandas_reads_csv(chunk: Any) -> Any:
    """Arrow's CSV reader keeps the space after a comma (``39, State-gov``), so ``, ,`` is a
    blank, not a missing value, and a number column with one becomes text; pandas, which the
    local engine reads with, skips the space. Undone here: the same values whichever engine
    reads."""
    pandas = require("pandas", "ml")
    missing = require("pandas._libs.parsers", "ml").STR_NA_VALUES  # what read_csv takes as NaN
    chunk = chunk.rename(columns=lambda c: str(c).lstrip(" "))
    for column in chunk.select_dtypes(include="object").columns:
        values = chunk[column].map(lambda v: v.lstrip(" ") if isinstance(v, str) else v)
        values = values.where(~values.isin(missing), None)
        numbers = pandas.to_numeric(values, errors="coerce")
        whole = numbers.notna().sum() == values.notna().sum()  # as pandas: numbers if all are
        chunk[column] = numbers if whole else values
    return chunk


# driver side ---------------------------------------------------------------------------------
def write_checked(frames: list[Any], job: BatchJob) -> BatchReport:
    """The predicted batches, in the file's order, written as the output; InvalidRows naming
    each marked row by its number in the file (and nothing written) when any broke a rule."""
    pandas = require("pandas", "ml")
    problems: list[RowProblem] = []
    first = 0
    for frame in frames:
        for i, marked in enumerate(frame[PROBLEMS]):
            if isinstance(marked, str):
                problems += [RowProblem(first + i, c, m) for c, m in json.loads(marked)]
        first += len(frame)
    if problems:
        raise InvalidRows(problems[:MAX_PROBLEMS])
    kept = [frame.drop(columns=[PROBLEMS]) for frame in frames if len(frame)]
    write_joined(kept or [pandas.DataFrame(columns=job.columns)], job.output)
    return BatchReport(first, len(kept), 0, job.output)
