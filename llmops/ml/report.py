"""The report of a training run: ``report.md`` (tables, plots linked as PNG files beside it)
and ``report.html`` (the same, with the plots embedded as base64 PNGs: one self-contained
file to attach to a pull request or a CI run).

Sections: summary (model, version, run, parameters, data hash, time), data validation, test
metrics, latency and size, gates (each with its value, the baseline compared and the
verdict), metrics per slice, fairness gaps with 95 % intervals, permutation importance, and
the plots of ``llmops.ml.plots``.

The layout follows the eval reports (``llmops.evaluation.report``); both render their tables
with ``llmops.tables``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from llmops.config.model_app import ModelAppConfig
from llmops.deps import available, require
from llmops.ml import plots
from llmops.ml.fairness import Gap
from llmops.ml.metrics import positive_label
from llmops.ml.validation import ValidationReport
from llmops.tables import STYLE, Table, html_table, markdown_table

IMPORTANCE_ROWS = 500  # permutation importance on at most this many test rows
IMPORTANCE_REPEATS = 3
SEED = 0
NO_PLOTS = "(no plots: matplotlib is not installed; `pip install matplotlib` draws them)"


class GateOutcome(Protocol):
    """A checked gate (``llmops.evaluation.gates.GateResult``)."""

    @property
    def gate(self) -> object: ...  # its text is str(gate)
    @property
    def value(self) -> float | None: ...
    @property
    def passed(self) -> bool: ...
    @property
    def note(self) -> str: ...  # the baseline's value, or that there is none yet


class VersionInfo(Protocol):
    @property
    def version(self) -> int: ...


class TrainingOutcome(Protocol):
    """What the report reads of a training run (``llmops.pipelines.train.TrainReport``)."""

    @property
    def model(self) -> str: ...
    @property
    def validation(self) -> ValidationReport: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def metrics(self) -> Mapping[str, float]: ...
    @property
    def runtime(self) -> Mapping[str, float]: ...
    @property
    def slices(self) -> Mapping[str, Mapping[str, Mapping[str, float]]]: ...
    @property
    def fairness(self) -> Mapping[str, Mapping[str, Gap]]: ...
    @property
    def gates(self) -> Sequence[GateOutcome]: ...
    @property
    def version(self) -> VersionInfo | None: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def data_sha256(self) -> str: ...
    @property
    def seconds(self) -> float: ...
    @property
    def passed(self) -> bool: ...


def write_training_report(
    folder: Path, outcome: TrainingOutcome, model: Any, test: Any, app: ModelAppConfig
) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and the plots' PNGs into ``folder`` for a run
    whose fitted ``model`` was scored on the ``test`` rows (target column included)."""
    folder.mkdir(parents=True, exist_ok=True)
    features, truth = test.drop(columns=[app.target]), test[app.target]
    importances = permutation_importances(model, features[app.features.columns()], truth)
    score_name = "accuracy" if app.task == "classification" else "R²"
    tables = _tables(outcome, importances, score_name)
    figures: list[plots.Plot] = []
    if available("matplotlib"):
        figures = [*_plots(model, features, truth, app), plots.importance(importances, score_name)]
    for figure in figures:
        (folder / figure.file).write_bytes(figure.png)
    md, page = folder / "report.md", folder / "report.html"
    md.write_text(markdown(outcome, tables, figures), encoding="utf-8")
    page.write_text(html_page(outcome, tables, figures), encoding="utf-8")
    return md, page


def permutation_importances(
    model: Any, features: Any, truth: Any
) -> dict[str, tuple[float, float]]:
    """``{column: (mean, std)}``: how much the model's own score (accuracy, R²) drops when
    the column is shuffled, over a seeded sample of at most IMPORTANCE_ROWS rows."""
    inspection = require("sklearn.inspection", "ml")
    if len(features) > IMPORTANCE_ROWS:
        features = features.sample(IMPORTANCE_ROWS, random_state=SEED)
        truth = truth.loc[features.index]
    found = inspection.permutation_importance(
        model, features, truth, n_repeats=IMPORTANCE_REPEATS, random_state=SEED
    )
    means, stds = found.importances_mean, found.importances_std
    return {str(c): (float(means[i]), float(stds[i])) for i, c in enumerate(features.columns)}


def _plots(model: Any, features: Any, truth: Any, app: ModelAppConfig) -> list[plots.Plot]:
    predicted = model.predict(features)
    if app.task == "regression":
        return [plots.prediction_errors(truth, predicted)]
    classes = list(model.classes_)
    figures = [plots.confusion_matrix(truth, predicted, classes)]
    if len(classes) == 2:
        label = positive_label(model, app.positive_class)
        probability = model.predict_proba(features)[:, classes.index(label)]
        figures += [
            plots.roc_curve(truth, probability, label, app.model.type),
            plots.calibration_curve(truth, probability, label, app.model.type),
        ]
    return figures


def _tables(
    outcome: TrainingOutcome, importances: Mapping[str, tuple[float, float]], score_name: str
) -> list[tuple[str, Table]]:
    tables = [
        ("Summary", summary_table(outcome)),
        ("Test metrics", _pairs(outcome.metrics)),
        ("Latency and size", runtime_table(outcome.runtime)),
        ("Gates", gate_table(outcome.gates)),
    ]
    tables += [(f"Metrics by {column}", slice_table(column, groups))
               for column, groups in outcome.slices.items()]  # fmt: skip
    if outcome.fairness:
        tables.append(("Fairness gaps (95% bootstrap CI)", fairness_table(outcome.fairness)))
    ranked = sorted(importances.items(), key=lambda item: -item[1][0])
    rows = [[name, f"{mean:.4f}", f"{std:.4f}"] for name, (mean, std) in ranked]
    tables.append(("Permutation importance", (["column", f"drop in {score_name}", "std"], rows)))
    return tables


def summary_table(outcome: TrainingOutcome) -> Table:
    version = outcome.version
    registered = "not registered" if version is None else f"{version.version} (alias candidate)"
    rows = [
        ["model", outcome.model],
        ["version", registered],
        ["MLflow run", outcome.run_id or "—"],
        ["parameters", ", ".join(f"{k}={v}" for k, v in outcome.params.items()) or "defaults"],
        ["data sha256", outcome.data_sha256 or "—"],
        ["data validation", outcome.validation.to_text()],
        ["seconds", f"{outcome.seconds:.1f}"],
    ]
    return ["", "value"], rows


def _pairs(values: Mapping[str, float]) -> Table:
    return ["metric", "value"], [[name, f"{value:.4f}"] for name, value in values.items()]


def runtime_table(runtime: Mapping[str, float]) -> Table:
    shown = {
        "latency_ms_per_row": lambda v: f"{v:.3f} ms (median over single-row predict calls)",
        "latency_ms_per_row_batch": lambda v: f"{v:.4f} ms (256-row batch, per row)",
        "model_bytes": lambda v: f"{v:,.0f} bytes, pickled ({_binary_size(v)})",
    }
    rows = [[name, shown.get(name, lambda v: f"{v:.4g}")(value)] for name, value in runtime.items()]
    return ["figure", "value"], rows


def _binary_size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.3g} {unit}"
        count /= 1024
    return f"{count:.3g} GiB"


def gate_table(gates: Sequence[GateOutcome]) -> Table:
    rows = [
        [
            str(g.gate),
            "missing" if g.value is None else f"{g.value:.4g}",
            g.note or "—",
            "pass" if g.passed else "FAIL",
        ]
        for g in gates
    ]
    return ["gate", "value", "baseline", "result"], rows


def slice_table(column: str, groups: Mapping[str, Mapping[str, float]]) -> Table:
    names = sorted({m for figures in groups.values() for m in figures})
    rows = [
        [group, *(f"{figures.get(n, float('nan')):.4f}" for n in names)]
        for group, figures in groups.items()
    ]
    return [column, *names], rows


def fairness_table(fairness: Mapping[str, Mapping[str, Gap]]) -> Table:
    rows = [
        [column, measure, f"{gap.value:.3f}", f"[{gap.low:.3f}, {gap.high:.3f}]"]
        for column, gaps in fairness.items()
        for measure, gap in gaps.items()
    ]
    return ["column", "measure", "gap", "95% CI"], rows


def _status(outcome: TrainingOutcome) -> str:
    return "PASSED" if outcome.passed else "FAILED"


def markdown(
    outcome: TrainingOutcome, tables: list[tuple[str, Table]], figures: list[plots.Plot]
) -> str:
    parts = [f"# Training report: {outcome.model} — {_status(outcome)}"]
    for title, table in tables:
        parts += [f"## {title}", markdown_table(table) if table[1] else "(none)"]
    shown = [f"![{f.title}]({f.file})" for f in figures] or [NO_PLOTS]
    parts += ["## Plots", *shown]
    return "\n\n".join(parts) + "\n"


def _img(figure: plots.Plot) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    title = html.escape(figure.title)
    return (
        f"<figure><figcaption><b>{title}</b></figcaption>"
        f"<img alt='{title}' src='data:image/png;base64,{data}'></figure>"
    )


def html_page(
    outcome: TrainingOutcome, tables: list[tuple[str, Table]], figures: list[plots.Plot]
) -> str:
    name, status = html.escape(outcome.model), _status(outcome)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{name} training</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Training report: {name} — <span class='{status}'>{status}</span></h1>",
    ]
    for title, table in tables:
        body = html_table(table) if table[1] else "<p>(none)</p>"
        parts += [f"<h2>{html.escape(title)}</h2>", body]
    shown = [_img(f) for f in figures] or [f"<p>{NO_PLOTS}</p>"]
    parts += ["<h2>Plots</h2>", *shown, "</body></html>"]
    return "\n".join(parts)
