"""Quality gates: ``"recall@5 >= 0.9"``, ``"p95_latency_ms <= 500"``.

A gate names a metric of the run summary (a mean such as ``token_f1``, or a run-level figure
such as ``p95_latency_ms``), a comparison and a threshold. A metric the run did not produce
fails its gate: a gate that silently passes on a typo would guard nothing.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
_GATE = re.compile(r"^\s*([A-Za-z_][\w@.]*)\s*(>=|<=|==|>|<)\s*(-?\d+(?:\.\d*)?(?:e-?\d+)?)\s*$")
FORM = "'<metric> <op> <number>', op one of >=, <=, >, <, == (e.g. 'recall@5 >= 0.9')"


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    value: float | None  # None: the run has no such metric
    passed: bool

    def describe(self) -> str:
        shown = "missing" if self.value is None else f"{self.value:.4g}"
        return f"{'PASS' if self.passed else 'FAIL'}  {self.gate}  (got {shown})"


def parse_gate(text: str) -> Gate:
    """Parse one gate; ValueError shows the expected form."""
    match = _GATE.match(text)
    if not match:
        raise ValueError(f"cannot read the gate '{text}'; expected {FORM}")
    return Gate(match.group(1).lower(), match.group(2), float(match.group(3)))


def check(gates: list[Gate], values: Mapping[str, float]) -> list[GateResult]:
    """Each gate against ``values`` (``{metric: value}``)."""
    results = []
    for gate in gates:
        value = values.get(gate.metric)
        passed = value is not None and _OPS[gate.op](value, gate.threshold)
        results.append(GateResult(gate, value, passed))
    return results
