"""Eval suite specs: which app, which dataset, which metrics, which gates, which variants.

    name: quickstart
    app: ../configs/quickstart.yaml
    dataset: {path: ../datasets/guide-qa.jsonl}
    metrics: [hit@4, recall@4, mrr@4, token_f1, rouge_l, abstention_accuracy]
    gates: ["hit@4 >= 0.8", "p95_latency_ms <= 500"]
    variants:
      - {name: dense-only, retrieval: {mode: dense}}
    experiment: true   # and every variant of the app's experiment: section

Validated like app configs: every problem at once, each as ``file:line:col  key  message``.
Paths are relative to the suite file. Component sections (a variant's ``generator``, the
``judge``) are checked against the registry by the caller (``extra_checks``), since this
package does not know the components.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from llmops.config import (
    ExtraChecks,
    SourceMap,
    issue_at,
    issues_from_validation,
    read_yaml,
    resolve_path,
)
from llmops.config.component import Strict
from llmops.config.experiment import VariantConfig
from llmops.config.interpolate import Interpolator
from llmops.errors import ConfigError, ConfigIssue
from llmops.evaluation.answer_metrics import TEXT_METRICS
from llmops.evaluation.gates import Gate, parse_gate
from llmops.evaluation.retrieval_metrics import METRICS as RANKING_METRICS

RAGAS_NON_LLM = ("nonllm_context_precision", "nonllm_context_recall")
JUDGED = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")
ANSWER_METRICS = (*TEXT_METRICS, "semantic_similarity", "abstention_accuracy")
# per-sample operational figures (always recorded) and run-level ones (for gates)
OPERATIONAL = ("latency_ms", "prompt_tokens", "completion_tokens", "cost_usd")
RUN_LEVEL = ("p50_latency_ms", "p95_latency_ms", "total_tokens", "total_cost_usd", "error_rate")
DEFAULT_METRICS = (
    "hit@4",
    "recall@4",
    "mrr@4",
    "ndcg@4",
    "exact_match",
    "token_f1",
    "rouge_l",
    "bleu",
    "semantic_similarity",
    "abstention_accuracy",
)
_RANKING = re.compile(r"([a-z]+)@(\d+)")


def known_metric(name: str) -> bool:
    match = _RANKING.fullmatch(name)
    if match:
        return match.group(1) in RANKING_METRICS and int(match.group(2)) >= 1
    return name in (*ANSWER_METRICS, *RAGAS_NON_LLM, *JUDGED)


def allowed_metrics() -> str:
    ranking = ", ".join(f"{m}@k" for m in RANKING_METRICS)
    return ", ".join([ranking, *ANSWER_METRICS, *RAGAS_NON_LLM, *JUDGED])


class DatasetSpec(Strict):
    path: str
    format: Literal["auto", "jsonl", "squad", "clapnq", "beir"] = "auto"
    split: str = Field("test", description="BEIR: which qrels/<split>.tsv.")
    limit: int | None = Field(None, ge=1, description="Only the first N questions.")


class VariantSpec(VariantConfig):
    """The app with some settings changed; unset ones keep the app's (the same shape as an app
    experiment's variants, plus a name; the generator is checked by the runner)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    generator: dict[str, Any] | None = None  # type: ignore[assignment]

    @field_validator("fallbacks")
    @classmethod
    def _scored_alone(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None:
            raise ValueError(
                "fallbacks serve live traffic; an offline variant is scored on its own "
                "generator alone (leave fallbacks out)"
            )
        return value


class Prices(Strict):
    """US dollars per 1,000 tokens, for the cost estimate."""

    prompt_per_1k: float = Field(0.0, ge=0)
    completion_per_1k: float = Field(0.0, ge=0)


class SuiteSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    app: str = Field(description="The app config to evaluate (relative to the suite file).")
    dataset: DatasetSpec
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    gates: list[str] = Field(default_factory=list)
    variants: list[VariantSpec] = Field(default_factory=list)
    experiment: bool = Field(
        False,
        description="Also evaluate every variant of the app's `experiment:` section, named as "
        "in the app and built as the live service routes them (the app needs one).",
    )
    judge: dict[str, Any] | None = Field(
        None, description="A generator section (any registered type) used as the LLM judge."
    )
    concurrency: int = Field(4, ge=1, le=256)
    results_dir: str = "../.llmops/eval"
    prices: Prices | None = None
    resamples: int = Field(2000, ge=100, le=100_000)
    seed: int = 0

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        names = [m.strip().lower() for m in value]
        unknown = [m for m in names if not known_metric(m)]
        if unknown:
            raise ValueError(f"unknown metric '{unknown[0]}'; allowed: {allowed_metrics()}")
        return list(dict.fromkeys(names))

    @field_validator("gates")
    @classmethod
    def _gates(cls, value: list[str]) -> list[str]:
        for text in value:
            if parse_gate(text).baseline is not None:
                raise ValueError(
                    f"'{text}': gates on a baseline model ('production') belong to model apps; "
                    "an eval suite compares variants with `llmops eval compare`"
                )
        return value

    @field_validator("variants")
    @classmethod
    def _unique_variants(cls, value: list[VariantSpec]) -> list[VariantSpec]:
        names = [v.name for v in value]
        doubles = sorted({n for n in names if names.count(n) > 1 or n == BASELINE})
        if doubles:
            raise ValueError(f"variant names must be unique and not '{BASELINE}': '{doubles[0]}'")
        return value

    def parsed_gates(self) -> list[Gate]:
        return [parse_gate(g) for g in self.gates]


BASELINE = "baseline"  # the app exactly as configured; variants are compared with it


@dataclass(frozen=True)
class LoadedSuite:
    spec: SuiteSpec
    file: str
    base_dir: Path
    source_map: SourceMap

    def path(self, value: str) -> Path:
        return resolve_path(self.base_dir, value)

    @property
    def fingerprint(self) -> str:
        """A hash of the suite's settings (what a resumed run must share)."""
        text = json.dumps(self.spec.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_suite(path: str | Path, extra_checks: ExtraChecks | None = None) -> LoadedSuite:
    """Read and validate a suite; raises ConfigError listing every problem. ``extra_checks``
    of the raw (interpolated) data run even when its shape is wrong elsewhere, so every
    problem is reported at once."""
    file = str(path)
    raw, smap = read_yaml(Path(path), file)
    interpolator = Interpolator()
    data = interpolator.resolve(raw)
    issues = [issue_at(smap, file, loc, msg, hint) for loc, msg, hint in interpolator.problems]
    base_dir = Path(path).resolve().parent
    spec = None
    try:
        spec = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        issues += issues_from_validation(exc, smap, file, (), SuiteSpec)
    if spec is not None:
        issues += _semantic_issues(spec, smap, file, base_dir)
    if extra_checks is not None and isinstance(data, dict):
        issues += extra_checks(data, smap, file, base_dir)
    if issues or spec is None:
        raise ConfigError(sorted(issues, key=lambda i: (i.line, i.col)))
    return LoadedSuite(spec, file, base_dir, smap)


def _semantic_issues(
    spec: SuiteSpec, smap: SourceMap, file: str, base_dir: Path
) -> list[ConfigIssue]:
    issues = []
    for key, value in (("app",), spec.app), (("dataset", "path"), spec.dataset.path):
        if not resolve_path(base_dir, value).exists():
            hint = f"paths are relative to the suite file's folder ({base_dir})"
            issues.append(issue_at(smap, file, key, f"not found: {value}", hint))
    produced = {*spec.metrics, *OPERATIONAL, *RUN_LEVEL}
    for i, gate in enumerate(spec.parsed_gates()):
        if gate.metric not in produced:
            hint = "add it to metrics, or gate on one of: " + ", ".join(sorted(produced))
            issues.append(
                issue_at(
                    smap,
                    file,
                    ("gates", i),
                    f"the gate's metric '{gate.metric}' is not measured by this suite",
                    hint,
                )
            )
    if spec.judge is None:
        for i, metric in enumerate(spec.metrics):
            if metric in JUDGED:
                hint = "add a judge: section (a generator, e.g. type: openai_compat)"
                issues.append(
                    issue_at(
                        smap,
                        file,
                        ("metrics", i),
                        f"'{metric}' is LLM-judged and needs a judge",
                        hint,
                    )
                )
    return issues
