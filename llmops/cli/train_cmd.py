"""llmops train"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from llmops.cli.common import ConfigArg, console, errors, run
from llmops.config import load_model_app_config

if TYPE_CHECKING:  # the training stack is imported when `train` runs, not at CLI start
    from llmops.pipelines.train import DataInvalid, Training, TrainReport

EXIT_GATES = 1
EXIT_DATA = 2


def train(
    config: ConfigArg,
    trials: int | None = typer.Option(
        None, "--trials", min=1, help="Search trials (default: search.n_trials in the config)."
    ),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register the model when its gates pass."
    ),
) -> None:
    """Train a model app (kind: model): validate the data, search hyperparameters with
    Optuna (resumable: a killed search goes on from its finished trials), fit, score on the
    test rows, check the gates, and register the model in MLflow with the alias `candidate`.

    The report (Markdown, and HTML with the plots) is written to data_dir/reports/<run id>/
    and logged to the MLflow run; its path is printed last.

    Exit codes: 0 registered (or gates passed), 1 a gate failed, 2 the config or the data
    is invalid (the report names column, rule, count and sample rows).

    Example: llmops train configs/adult.yaml --trials 30
    """
    from llmops.pipelines.train import Training

    loaded = run(lambda: load_model_app_config(config))
    if trials is not None and loaded.app.search is not None:
        loaded.app.search.n_trials = trials
    training = run(lambda: Training(loaded, step=lambda text: errors.print(text, highlight=False)))
    report = run(lambda: _train(training, register))
    _show(report)
    if not report.passed:
        raise typer.Exit(EXIT_GATES)


def _train(training: Training, register: bool) -> TrainReport:
    """The job's report; invalid data is reported (terminal and HTML) and exits 2."""
    from llmops.pipelines.train import DataInvalid

    try:
        return training.run(register=register)
    except DataInvalid as invalid:
        _write_validation(training.data_dir, invalid)
        raise typer.Exit(EXIT_DATA) from None


def _write_validation(data_dir: Path, invalid: DataInvalid) -> None:
    path = data_dir / "reports" / "data-validation.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(invalid.report.to_html("Data validation"))
    errors.print(invalid.report.to_text(), markup=False, highlight=False)
    errors.print(f"report: {path}", markup=False, highlight=False)


def _show(report: TrainReport) -> None:
    table = Table("metric", "test", title=f"{report.model}: test rows")
    for name, value in report.metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    for column, groups in report.slices.items():
        names = sorted({m for figures in groups.values() for m in figures})
        by_group = Table(column, *names, title=f"by {column}")
        for group, figures in groups.items():
            by_group.add_row(group, *(f"{figures.get(n, float('nan')):.4f}" for n in names))
        console.print(by_group)
    if report.search is not None:
        s = report.search
        console.print(
            f"search: best cv score {s.best_score:.4f} with {s.best_params} "
            f"({s.trials_run} trials now, {s.trials_total} in the study)"
        )
    for column, gaps in report.fairness.items():
        shown = ", ".join(f"{measure} {gap}" for measure, gap in gaps.items())
        console.print(f"fairness by {column}: {shown}", highlight=False)
    if report.runtime:
        shown = ", ".join(f"{name} {value:.4g}" for name, value in report.runtime.items())
        console.print(f"latency and size: {shown}", highlight=False)
    for gate in report.gates:
        console.print(gate.describe(), highlight=False)
    if report.version is not None:
        v = report.version
        console.print(f"registered [bold]{v.name}[/bold] version {v.version} as candidate")
    elif not report.passed:
        console.print("[red]a gate failed: not registered[/red]")
    console.print(f"done in {report.seconds:.1f}s (MLflow run {report.run_id})")
    if report.report_dir is not None:
        console.print(f"report: {report.report_dir / 'report.html'}", markup=False, highlight=False)
