"""llmops predict"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llmops.cli.common import ConfigArg, console, errors, run
from llmops.cli.train_cmd import EXIT_DATA
from llmops.config import load_model_app_config


def predict(
    config: ConfigArg,
    source: Path = typer.Option(..., "--input", "-i", help="CSV or Parquet file of rows."),
    output: Path = typer.Option(..., "--output", "-o", help="Parquet file to write."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="NAME@REF (default: the app's model @ its serving alias)."
    ),
    chunk_rows: int = typer.Option(10_000, "--chunk-rows", min=1, help="Rows per chunk."),
) -> None:
    """Predict a file of rows with a registered version, in chunks, with a progress bar.

    Each chunk is checked against the app's schema (a bad row stops the run, naming the row and
    column; exit code 2) and written as a part beside the output: a killed run resumes at the
    first part it had not written. The output holds the input columns plus `prediction` and
    `probability_<class>` columns.

    Example: llmops predict configs/adult.yaml -i big.parquet -o out.parquet -m adult@production
    """
    from llmops.errors import InvalidRows
    from llmops.ml.predict import model_columns
    from llmops.pipelines.batch_predict import BatchReport, count_rows, predict_file
    from llmops.pipelines.train import app_registry

    loaded = run(lambda: load_model_app_config(config))
    app = loaded.app
    name, _, ref = (model or f"{app.model_name}@{app.serving.alias}").partition("@")
    fitted = run(lambda: app_registry(loaded).load(name, ref or app.serving.alias))
    columns = model_columns(fitted, app)
    with Progress(
        TextColumn("[bold]predict[/bold]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("rows"), TimeElapsedColumn(), console=errors,
    ) as bar:  # fmt: skip
        task = bar.add_task("predict", total=run(lambda: count_rows(source)))

        def predicted() -> BatchReport:
            try:
                return predict_file(
                    app, fitted, columns, source, output, chunk_rows,
                    lambda done: bar.update(task, completed=done),
                )  # fmt: skip
            except InvalidRows as exc:  # the data's fault: exit 2, like invalid training data
                errors.print(f"error: {exc}", markup=False, highlight=False)
                raise typer.Exit(EXIT_DATA) from None

        report = run(predicted)
    resumed = f" ({report.resumed_parts} parts from an earlier run)" if report.resumed_parts else ""
    console.print(f"wrote {report.rows} predictions to {report.output}{resumed}")
