"""Data validation with pandera: the app's ``schema:`` section as a pandera DataFrameSchema,
and a report of what failed (column, rule, how many rows, sample rows) for the terminal and
as HTML.

Why pandera: it validates pandas frames in-process with a small footprint, reports every
failure at once (``lazy=True``) with the failing rows' index, and its schemas are plain Python
built from our YAML. Great Expectations does more (data docs, stores) with a heavier context
and configuration of its own; a schema per model app is what is needed here.

The same rules check training data (with the table-wide limits: row count, null and duplicate
ratios, class balance) and the rows sent to ``/predict`` or a batch job (per-row rules only).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from llmops.config.model_app import ColumnRule, SchemaConfig, Task
from llmops.deps import require

SAMPLE_ROWS = 5
DTYPES = {"int": "Int64", "float": "float64", "str": "str", "bool": "boolean"}


@dataclass(frozen=True)
class Violation:
    """One rule that failed: on which column (None: the whole table), how often, examples."""

    column: str | None
    rule: str
    count: int
    samples: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        where = self.column or "<table>"
        return f"{where}: {self.rule} failed for {self.count} row(s)"


@dataclass(frozen=True)
class ValidationReport:
    rows: int
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_text(self) -> str:
        if self.ok:
            return f"data ok: {self.rows} rows pass every rule"
        lines = [f"data invalid: {len(self.violations)} rule(s) failed on {self.rows} rows"]
        for violation in self.violations:
            lines.append(f"  {violation.describe()}")
            lines += [f"    e.g. {sample}" for sample in violation.samples[:3]]
        return "\n".join(lines)

    def to_html(self, title: str) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(v.column or '(table)')}</td><td>{html.escape(v.rule)}</td>"
            f"<td>{v.count}</td><td><pre>{html.escape(_samples(v))}</pre></td></tr>"
            for v in self.violations
        )
        verdict = "passes every rule" if self.ok else f"{len(self.violations)} rule(s) failed"
        return (
            f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<h1>{html.escape(title)}</h1><p>{self.rows} rows: {verdict}</p>"
            "<table border=1 cellpadding=4><tr><th>column</th><th>rule</th><th>rows</th>"
            f"<th>sample rows</th></tr>{rows}</table>"
        )


def _samples(violation: Violation) -> str:
    return "\n".join(str(s) for s in violation.samples)


def validate(
    frame: Any, config: SchemaConfig, target: str, task: Task, training: bool = True
) -> ValidationReport:
    """Check ``frame``; ``training`` adds the table-wide limits and the target's rules."""
    pandera = require("pandera.pandas", "ml")
    schema = build_schema(config, target, task, training)
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        return ValidationReport(len(frame), _violations(exc.failure_cases, frame))
    return ValidationReport(len(frame), [])


def row_failures(schema: Any, frame: Any) -> dict[Any, list[tuple[str | None, str]]]:
    """Every row of ``frame`` that breaks ``schema`` (a per-row schema from ``build_schema``
    with ``training=False``): its index → (column, rule) pairs. A failure pandera does not tie
    to a row is under the key None."""
    pandera = require("pandera.pandas", "ml")
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        found: dict[Any, list[tuple[str | None, str]]] = {}
        cases = exc.failure_cases[["column", "check", "index"]]
        for column, rule, index in cases.itertuples(index=False):
            key = index if index is not None and index == index else None
            named = None if column is None or column != column else str(column)
            found.setdefault(key, []).append((named, str(rule)))
        return found
    return {}


def build_schema(config: SchemaConfig, target: str, task: Task, training: bool) -> Any:
    """The pandera schema: one Column per configured column (the target's only in training),
    plus the table-wide checks in training."""
    pandera = require("pandera.pandas", "ml")
    columns = {
        name: _column(pandera, rule)
        for name, rule in config.columns.items()
        if training or name != target
    }
    checks = _table_checks(pandera, config, target, task) if training else []
    return pandera.DataFrameSchema(columns, checks=checks)


def _column(pandera: Any, rule: ColumnRule) -> Any:
    Check = pandera.Check
    checks = []
    if rule.min is not None:
        checks.append(Check.ge(rule.min))
    if rule.max is not None:
        checks.append(Check.le(rule.max))
    if rule.allowed is not None:
        checks.append(Check.isin(rule.allowed))
    dtype = DTYPES[rule.type] if rule.type else None
    return pandera.Column(
        dtype, checks=checks, nullable=rule.nullable, unique=rule.unique, coerce=bool(dtype)
    )


def _table_checks(pandera: Any, config: SchemaConfig, target: str, task: Task) -> list[Any]:
    Check = pandera.Check
    checks = [
        Check(lambda d: len(d) >= config.min_rows, name=f"at least {config.min_rows} rows"),
        Check(
            lambda d: d.isna().mean() <= config.max_null_ratio,
            name=f"null ratio at most {config.max_null_ratio:g}",
        ),
        Check(
            lambda d: d.duplicated().mean() <= config.max_duplicate_ratio if len(d) else True,
            name=f"duplicate-row ratio at most {config.max_duplicate_ratio:g}",
        ),
    ]
    if task == "classification" and config.min_class_share > 0:
        checks.append(
            Check(
                lambda d: (
                    target in d
                    and d[target].value_counts(normalize=True).min() >= config.min_class_share
                ),
                name=f"every class at least {config.min_class_share:g} of the rows",
            )
        )
    return checks


def _violations(failures: Any, frame: Any) -> list[Violation]:
    """Group pandera's failure cases by column and check, with a few failing rows each."""
    out = []
    for (column, check), cases in failures.groupby(["column", "check"], dropna=False, sort=False):
        column = None if column is None or column != column else str(column)  # NaN: the table
        index = [i for i in cases["index"].tolist() if i is not None and i == i]
        samples = [_row(frame, i) for i in index[:SAMPLE_ROWS]]
        if column is None and not samples:
            samples = [{"failing": str(v)} for v in cases["failure_case"].tolist()[:SAMPLE_ROWS]]
        out.append(Violation(column, str(check), len(cases), samples))
    return out


def _row(frame: Any, index: Any) -> dict[str, Any]:
    try:
        row = frame.loc[index]
    except KeyError:
        return {"index": index}
    return {"index": index, **{str(k): _plain(v) for k, v in row.items()}}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
