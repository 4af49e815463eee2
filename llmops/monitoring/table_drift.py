"""Drift of tabular features (and of predictions) between a reference table — the rows a model
was trained on — and a window of served rows.

Per column: numeric ones by the two-sample Kolmogorov–Smirnov test, categorical ones by the
chi-squared test of the two windows' category counts; every column also gets the population
stability index (PSI). A column drifts only when both say so: its p-value is below its share
of ``alpha`` (Bonferroni over the columns) **and** its PSI reaches ``min_psi``. On large
windows a p-value alone flags differences too small to matter (evidently#50, #509); the PSI
threshold is the effect size that must also be there. Windows smaller than ``min_rows`` are
not judged at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from llmops.deps import require
from llmops.monitoring.drift import ks, psi


@dataclass(frozen=True)
class ColumnDrift:
    test: str  # "ks" or "chi2"
    statistic: float
    p_value: float
    psi: float
    detected: bool


@dataclass(frozen=True)
class TableDrift:
    detected: bool
    columns: dict[str, ColumnDrift]
    reference_rows: int
    current_rows: int
    judged: bool  # False: the current window is below min_rows

    @property
    def drifted(self) -> list[str]:
        return [name for name, c in self.columns.items() if c.detected]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drifted": self.drifted}


def compare_tables(
    reference: Any,
    current: Any,
    numeric: Sequence[str],
    categorical: Sequence[str],
    alpha: float = 0.01,
    min_psi: float = 0.1,
    min_rows: int = 100,
) -> TableDrift:
    """Test each listed column of ``current`` (a DataFrame) against ``reference``."""
    if len(current) < min_rows:
        return TableDrift(False, {}, len(reference), len(current), judged=False)
    level = alpha / max(len(numeric) + len(categorical), 1)
    columns: dict[str, ColumnDrift] = {}
    for name in numeric:
        ref = _numbers(reference[name])
        cur = _numbers(current[name])
        statistic, p_value = ks(ref, cur)
        shift = psi(ref, cur)
        columns[name] = ColumnDrift(
            "ks", statistic, p_value, shift, _drifted(p_value, shift, level, min_psi)
        )
    for name in categorical:
        statistic, p_value, shift = _categorical(reference[name], current[name])
        columns[name] = ColumnDrift(
            "chi2", statistic, p_value, shift, _drifted(p_value, shift, level, min_psi)
        )
    detected = any(c.detected for c in columns.values())
    return TableDrift(detected, columns, len(reference), len(current), judged=True)


def _drifted(p_value: float, shift: float, level: float, min_psi: float) -> bool:
    return p_value < level and shift >= min_psi


def _numbers(column: Any) -> np.ndarray:
    values = np.asarray(column, dtype=np.float64)
    return values[~np.isnan(values)]


RARE_SHARE = 0.01  # categories rarer than this in the reference are pooled


def _categorical(reference: Any, current: Any) -> tuple[float, float, float]:
    """Chi-squared test of the category counts and the PSI of the category shares. Missing
    values are a category of their own; categories under 1 % of the reference (and ones it
    never had) are pooled, since a handful of rare values would otherwise dominate both the
    test (its small expected counts) and the PSI (its log of tiny shares)."""
    stats = require("scipy.stats", extra="monitor")
    ref = reference.astype(object).fillna("<missing>")
    shares = ref.value_counts(normalize=True)
    common = set(shares[shares >= RARE_SHARE].index)
    ref = ref.where(ref.isin(common), "<rare>")
    cur = current.astype(object).fillna("<missing>")
    cur = cur.where(cur.isin(common), "<rare>")
    categories = sorted(set(ref.unique()) | set(cur.unique()), key=str)
    counts = np.array(
        [[int((ref == c).sum()) for c in categories], [int((cur == c).sum()) for c in categories]]
    )
    statistic, p_value, _, _ = stats.chi2_contingency(counts + 0.5)  # no empty cells
    shares = np.clip(counts / counts.sum(axis=1, keepdims=True), 1e-4, None)
    shift = float(np.sum((shares[1] - shares[0]) * np.log(shares[1] / shares[0])))
    return float(statistic), float(p_value), shift
