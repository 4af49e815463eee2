"""llmops predict"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llmops.cli.common import ConfigArg, console, errors, run
from llmops.cli.train_cmd import EXIT_DATA
from llmops.config import load_model_app_config
from llmops.pipelines.batch_engines import Engine


def predict(
    config: ConfigArg,
    source: Path = typer.Option(..., "--input", "-i", help="CSV or Parquet file of rows."),
    output: Path = typer.Option(..., "--output", "-o", help="Parquet file to write."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="NAME@REF (default: the app's model @ its serving alias)."
    ),
    chunk_rows: int = typer.Option(10_000, "--chunk-rows", min=1, help="Rows per chunk."),
    engine: Engine = typer.Option(
        Engine.LOCAL, "--engine", help="Where to predict: this process, Ray or Spark."
    ),
    ray_address: str = typer.Option(
        "auto", "--ray-address", help="Ray cluster for --engine ray: auto, local or an address."
    ),
    spark_master: str = typer.Option(
        "local[*]", "--spark-master", help="Spark master URL for --engine spark."
    ),
) -> None:
    """Predict a file of rows with a registered version, in chunks, with a progress bar.

    Each chunk is checked against the app's schema (a bad row stops the run, naming the row and
    column; exit code 2) and written as a part beside the output: a killed run resumes at the
    first part it had not written. The output holds the input columns plus `prediction` and
    `probability_<class>` columns.

    With --engine ray or spark the same file is predicted on a cluster (the version is
    resolved here, so every worker loads the same one) and the output is the same, row for
    row; those engines do not resume, and --chunk-rows sets their batch size.

    Example: llmops predict configs/adult.yaml -i big.parquet -o out.parquet -m adult@production

    Example: llmops predict configs/adult.yaml -i big.csv -o out.parquet --engine spark
    """
    from llmops.errors import InvalidRows
    from llmops.ml.predict import model_columns
    from llmops.pipelines.batch_engines import (
        BatchJob,
        EngineOptions,
        RegisteredModel,
        make_engine,
    )
    from llmops.pipelines.batch_predict import BatchReport, count_rows
    from llmops.pipelines.train import app_registry

    loaded = run(lambda: load_model_app_config(config))
    app = loaded.app
    name, _, ref = (model or f"{app.model_name}@{app.serving.alias}").partition("@")
    registry = app_registry(loaded)
    version = run(lambda: registry.get(name, ref or app.serving.alias))
    fitted = run(lambda: registry.load_version(version))
    columns = model_columns(fitted, app)
    job = BatchJob(app, RegisteredModel.of(registry, version), columns, source, output, chunk_rows)
    runner = make_engine(engine, EngineOptions(ray_address, spark_master))
    with Progress(
        TextColumn("[bold]predict[/bold]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("rows"), TimeElapsedColumn(), console=errors,
    ) as bar:  # fmt: skip
        task = bar.add_task("predict", total=run(lambda: count_rows(source)))

        def predicted() -> BatchReport:
            try:
                return runner.run(job, fitted, lambda done: bar.update(task, completed=done))
            except InvalidRows as exc:  # the data's fault: exit 2, like invalid training data
                errors.print(f"error: {exc}", markup=False, highlight=False)
                raise typer.Exit(EXIT_DATA) from None

        report = run(predicted)
    resumed = f" ({report.resumed_parts} parts from an earlier run)" if report.resumed_parts else ""
    console.print(f"wrote {report.rows} predictions to {report.output}{resumed}")
