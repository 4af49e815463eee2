"""Batch prediction as a Spark job: Spark reads the file, ``mapInPandas`` predicts each
partition's Arrow batches with the driver's resolved version (loaded once per Python worker),
and the driver collects the rows, in the file's order, into the one output file.

MLflow's ``mlflow.pyfunc.spark_udf`` is not used: it returns what the model's ``predict``
returns, one column, so the class probabilities and the app's row checks that every other
engine gives would be lost."""

from __future__ import annotations

import os
import sys
from typing import Any

from llmops.deps import require
from llmops.pipelines.batch_engines import PROBLEMS, BatchJob, marked_chunk, write_checked
from llmops.pipelines.batch_predict import BatchReport, Progress

_LOADED: dict[tuple[str, str, int], Any] = {}
"""Versions this Python worker has loaded (Spark reuses its workers across tasks)."""


class SparkEngine:
    """Predicts on the Spark master ``master`` (``local[*]``, ``spark://host:7077``, ...); a
    session already open in this process is used as it is."""

    def __init__(self, master: str) -> None:
        self.master = master

    def run(self, job: BatchJob, fitted: Any, progress: Progress | None = None) -> BatchReport:
        sql = require("pyspark.sql", "spark")
        opened = sql.SparkSession.getActiveSession() is None
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers run this Python
        spark = (
            sql.SparkSession.builder.master(self.master)
            .appName("llmops-predict")
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        try:
            spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
            spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(job.chunk_rows))
            rows = _read(spark, job)
            schema = _output_schema(rows.schema, fitted)
            names = schema.fieldNames()

            def predict(batches: Any) -> Any:
                model = _model(job)
                for batch in batches:
                    if len(batch):
                        yield _with_columns(marked_chunk(job, model, batch), names)

            frame = rows.mapInPandas(predict, schema).toPandas()
            if progress is not None:
                progress(len(frame))
            return write_checked([frame], job)
        finally:
            if opened:
                spark.stop()


def _read(spark: Any, job: BatchJob) -> Any:
    """The file as a DataFrame whose whole numbers are 64-bit, as pandas reads them."""
    types = require("pyspark.sql.types", "spark")
    functions = require("pyspark.sql.functions", "spark")
    source = str(job.source.resolve())
    if not job.csv:
        rows = spark.read.parquet(source)
    else:
        rows = spark.read.csv(
            source, header=True, inferSchema=True, ignoreLeadingWhiteSpace=True, mode="FAILFAST"
        )
    narrow = (types.IntegerType, types.ShortType, types.ByteType)
    return rows.select(
        [
            functions.col(f"`{f.name}`").cast("long").alias(f.name)
            if isinstance(f.dataType, narrow)
            else functions.col(f"`{f.name}`")
            for f in rows.schema.fields
        ]
    )


def _output_schema(schema: Any, fitted: Any) -> Any:
    """The input's columns plus ``prediction`` (typed as the model's classes; a number for a
    regressor), ``probability_<class>`` and the problems column."""
    types = require("pyspark.sql.types", "spark")
    classes = getattr(fitted, "classes_", None)
    kinds = {"i": types.LongType(), "u": types.LongType(), "b": types.BooleanType()}
    kinds["f"] = types.DoubleType()
    label = kinds.get("f" if classes is None else classes.dtype.kind, types.StringType())
    fields = [*schema.fields, types.StructField("prediction", label)]
    if classes is not None and hasattr(fitted, "predict_proba"):
        fields += [types.StructField(f"probability_{c}", types.DoubleType()) for c in classes]
    fields.append(types.StructField(PROBLEMS, types.StringType()))
    return types.StructType(fields)


def _with_columns(frame: Any, names: list[str]) -> Any:
    """``frame`` with the columns of the output schema, in its order: a batch with a bad row
    has no predictions, and its missing columns are nulls (not NaN, which is no string)."""
    for name in names:
        if name not in frame:
            frame[name] = [None] * len(frame)
    return frame[names]


def _model(job: BatchJob) -> Any:
    version = job.model.version
    key = (job.model.tracking_uri, version.name, version.version)
    if key not in _LOADED:
        _LOADED[key] = job.model.load()
    return _LOADED[key]
