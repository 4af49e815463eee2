"""An evaluation run's outcome, as reports, MLflow logging and the CLI read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.evaluation.gates import GateResult
from llmops.evaluation.scoring import SampleResult
from llmops.evaluation.stats import Comparison
from llmops.evaluation.suite import LoadedSuite
from llmops.evaluation.summary import VariantSummary


@dataclass
class EvalRun:
    """What a run produced; ``passed`` is False when a gate failed."""

    run_dir: Path
    suite: LoadedSuite
    samples: dict[str, list[SampleResult]]  # per variant, in dataset order
    summaries: dict[str, VariantSummary]
    comparisons: dict[str, dict[str, Comparison]]  # variant -> metric -> vs the baseline
    gates: dict[str, list[GateResult]]
    params: dict[str, Any]
    mlflow_run_id: str | None = None

    @property
    def passed(self) -> bool:
        return all(r.passed for results in self.gates.values() for r in results)

    @property
    def metric_names(self) -> list[str]:
        """The suite's metrics that some variant produced, in the suite's order."""
        produced = {m for s in self.summaries.values() for m in s.metrics}
        return [m for m in self.suite.spec.metrics if m in produced]
