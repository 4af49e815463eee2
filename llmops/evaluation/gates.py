"""Quality gates: ``"recall@5 >= 0.9"``, ``"p95_latency_ms <= 500"``,
``"roc_auc >= production - 0.01"``.

A gate names a metric of the run summary (a mean such as ``token_f1``, or a run-level figure
such as ``p95_latency_ms``), a comparison and a threshold. A metric the run did not produce
fails its gate: a gate that silently passes on a typo would guard nothing.

The threshold may be a baseline's value of the same metric plus or minus a margin
(``production - 0.01``: no worse than the model in production by more than 0.01). With no
baseline yet (the first model) such a gate passes and says so.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
_NUMBER = r"\d+(?:\.\d*)?(?:e-?\d+)?"
_GATE = re.compile(
    rf"^\s*([A-Za-z_][\w@.]*)\s*(>=|<=|==|>|<)\s*"
    rf"(?:(-?{_NUMBER})|([A-Za-z_]\w*)\s*(?:([+-])\s*({_NUMBER}))?)\s*$"
)
FORM = (
    "'<metric> <op> <number>' or '<metric> <op> <baseline> [+|- <number>]', op one of >=, "
    "<=, >, <, == (e.g. 'recall@5 >= 0.9', 'roc_auc >= production - 0.01')"
)


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    threshold: float  # the number, or the margin added to the baseline's value
    baseline: str | None = None  # e.g. "production": compare with that model's value

    def __str__(self) -> str:
        if self.baseline is None:
            return f"{self.metric} {self.op} {self.threshold:g}"
        margin = f" {'-' if self.threshold < 0 else '+'} {abs(self.threshold):g}"
        return f"{self.metric} {self.op} {self.baseline}{margin if self.threshold else ''}"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    value: float | None  # None: the run has no such metric
    passed: bool
    note: str = ""  # e.g. the baseline's value, or that there is no baseline yet

    def as_dict(self) -> dict[str, Any]:
        """The gate, its parts, the value it was checked against and the verdict (what an eval
        run's summary.json keeps under ``gate_results``)."""
        gate = self.gate
        parts = {"metric": gate.metric, "op": gate.op, "threshold": gate.threshold}
        verdict = {"value": self.value, "passed": self.passed, "note": self.note}
        return {"gate": str(gate), **parts, "baseline": gate.baseline, **verdict}

    def describe(self) -> str:
        shown = "missing" if self.value is None else f"{self.value:.4g}"
        note = f"; {self.note}" if self.note else ""
        return f"{'PASS' if self.passed else 'FAIL'}  {self.gate}  (got {shown}{note})"


def parse_gate(text: str) -> Gate:
    """Parse one gate; ValueError shows the expected form."""
    match = _GATE.match(text)
    if not match:
        raise ValueError(f"cannot read the gate '{text}'; expected {FORM}")
    metric, op, number, baseline, sign, margin = match.groups()
    if number is not None:
        return Gate(metric.lower(), op, float(number))
    offset = float(margin or 0) * (-1 if sign == "-" else 1)
    return Gate(metric.lower(), op, offset, baseline.lower())


def check(
    gates: list[Gate],
    values: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]] | None = None,
) -> list[GateResult]:
    """Each gate against ``values`` (``{metric: value}``); a gate on a baseline reads its
    value from ``baselines[name][metric]``."""
    return [_check(gate, values.get(gate.metric), baselines or {}) for gate in gates]


def _check(
    gate: Gate, value: float | None, baselines: Mapping[str, Mapping[str, float]]
) -> GateResult:
    if gate.baseline is None:
        passed = value is not None and _OPS[gate.op](value, gate.threshold)
        return GateResult(gate, value, passed)
    reference = baselines.get(gate.baseline, {}).get(gate.metric)
    if reference is None:
        return GateResult(gate, value, value is not None, f"no {gate.baseline} value yet")
    threshold = reference + gate.threshold
    passed = value is not None and _OPS[gate.op](value, threshold)
    return GateResult(gate, value, passed, f"{gate.baseline} {reference:.4g}")
