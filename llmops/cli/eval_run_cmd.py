"""llmops eval run / llmops eval compare / llmops eval log"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from llmops.cli.common import StageBars, console, progress_bars, run
from llmops.evaluation.results import EvalRun
from llmops.evaluation.runs import compare_runs
from llmops.evaluation.stats import Comparison
from llmops.evaluation.suite import BASELINE
from llmops.pipelines.eval_ray import EvalEngine, answering_for
from llmops.pipelines.eval_run import run_suite


def _metric_table(result: EvalRun) -> Table:
    variants = list(result.summaries)
    table = Table("metric", *variants, title=f"{result.suite.spec.name}: mean [95% CI]")
    for metric in [*result.metric_names, "latency_ms"]:
        cells = []
        for variant in variants:
            s = result.summaries[variant].metrics.get(metric)
            cells.append("—" if s is None else f"{s.mean:.3f} [{s.low:.3f}, {s.high:.3f}]")
        table.add_row(metric, *cells)
    for key in ("p50_latency_ms", "p95_latency_ms", "total_tokens", "total_cost_usd"):
        figures = [result.summaries[v].run.get(key) for v in variants]
        if any(f is not None for f in figures):
            table.add_row(key, *["—" if f is None else f"{f:.4g}" for f in figures])
    return table


def _comparison_table(comparisons: dict[str, Comparison], title: str) -> Table:
    table = Table("metric", "A", "B", "B − A", "95% CI", "p", "significant", "n", title=title)
    for metric, c in comparisons.items():
        table.add_row(
            metric,
            f"{c.mean_a:.3f}",
            f"{c.mean_b:.3f}",
            f"{c.diff:+.3f}",
            f"[{c.low:+.3f}, {c.high:+.3f}]",
            c.p_text,
            "[bold]yes[/bold]" if c.significant else "no",
            str(c.n),
        )
    return table


def run_cmd(
    suite: Path = typer.Argument(..., help="Eval suite file (YAML), e.g. eval/quickstart.yaml."),
    resume: Path | None = typer.Option(
        None, "--resume", help="Finish an interrupted run: its folder under results_dir."
    ),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking server (default: SQLite in the app's "
        "data_dir, <data_dir>/mlflow.db).",
    ),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="Do not log to MLflow."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's summary.json."),
    engine: EvalEngine = typer.Option(
        EvalEngine.LOCAL, "--engine", help="Where the questions are answered: here or on Ray."
    ),
    ray_address: str = typer.Option(
        "auto", "--ray-address", help="Ray cluster for --engine ray: auto, local or an address."
    ),
) -> None:
    """Run an eval suite: answer its dataset with the app (and each variant), score every
    answer, write a report, log an MLflow run; exit code 1 when a gate fails.

    Per-sample results are written as they finish, so an interrupted run can
    be finished with --resume RUN_FOLDER. The run folder holds
    samples-<variant>.jsonl, summary.json, report.md and report.html.

    Examples:

      llmops eval run eval/quickstart.yaml

      llmops eval run eval/quickstart.yaml --tracking-uri http://127.0.0.1:5000

      llmops eval run eval/quickstart.yaml --engine ray --ray-address ray://head:10001

    With --engine ray, Ray actors each build the app once and answer a share of the
    questions; scoring, reports, MLflow and gates run here as they always do.
    """
    answering = answering_for(engine, suite, ray_address)
    with progress_bars() as progress:
        update = StageBars(progress, lambda _: "samples")
        result = run(
            lambda: run_suite(
                suite, resume, tracking_uri, update, track=not no_mlflow, answering=answering
            )
        )
    if as_json:
        typer.echo((result.run_dir / "summary.json").read_text())
    else:
        console.print(_metric_table(result))
        for comparisons in result.comparisons.items():
            name, table = comparisons
            console.print(_comparison_table(table, f"{name} vs {BASELINE}"))
        for variant, gates in result.gates.items():
            for gate in gates:
                console.print(f"{variant}: {gate.describe()}", markup=False)
        console.print(f"report: {result.run_dir / 'report.html'}", markup=False)
        if result.mlflow_run_id:
            console.print(f"mlflow run: {result.mlflow_run_id}", markup=False)
    if not no_mlflow and result.mlflow_run_id is None:
        _tracking_failed(result.run_dir)
    if not result.passed:
        raise typer.Exit(1)


def _tracking_failed(run_dir: Path) -> None:
    """Say on stderr that the results are safe and how to log them once MLflow is back."""
    from llmops.evaluation.tracking import pending

    record = pending(run_dir) or {}
    typer.echo(
        f"warning: MLflow tracking failed ({record.get('error', 'unknown error')}); the run's "
        f"results are in {run_dir} and the gates decided from them. Once the tracking server "
        f"is back: llmops eval log {run_dir}",
        err=True,
    )


def log_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder whose MLflow logging failed."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="Log there instead of where the run tried to (its record)."
    ),
) -> None:
    """Log a finished run to MLflow after its tracking failed (the server was down): uploads
    the params, metrics and files kept in RUN_DIR/mlflow-pending.json. Exit code 1 while the
    store still fails (the record stays for the next try).

    Example:

      llmops eval log results/quickstart-20261206-101500-000000
    """
    from llmops.evaluation.tracking import PENDING, pending, upload

    record = run(lambda: pending(run_dir))
    if record is None:
        typer.echo(f"{run_dir}: nothing to log (no {PENDING}: logged already or never tried)")
        raise typer.Exit(1)
    run_id = run(lambda: upload(record, run_dir, tracking_uri))
    if run_id is None:
        _tracking_failed(run_dir)
        raise typer.Exit(1)
    console.print(f"mlflow run: {run_id}", markup=False)


def compare_cmd(
    run_a: Path = typer.Argument(..., help="The earlier run's folder (A)."),
    run_b: Path = typer.Argument(..., help="The later run's folder (B)."),
    variant: str = typer.Option(BASELINE, "--variant", help="Which variant of each run."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Compare two runs sample by sample: B − A for every metric, its 95% bootstrap CI and a
    paired permutation p-value (significant: p < 0.05), so noise is not read as progress."""
    comparisons = run(lambda: compare_runs(run_a, run_b, variant))
    if as_json:
        typer.echo(json.dumps({m: c.as_dict() for m, c in comparisons.items()}, indent=2))
    else:
        console.print(_comparison_table(comparisons, f"{run_b.name} (B) vs {run_a.name} (A)"))
