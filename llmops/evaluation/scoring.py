"""One answered sample and its scores: what the runner writes per line, and how it is scored.

A metric that does not apply to a sample is None and is left out of the means: retrieval
metrics need reference ids, answer metrics need reference answers (answerable questions);
abstention accuracy applies to every sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from llmops.evaluation import answer_metrics
from llmops.evaluation.answer_metrics import Embed
from llmops.evaluation.datasets import Sample
from llmops.evaluation.retrieval_metrics import parse_metric
from llmops.evaluation.suite import ANSWER_METRICS, known_metric

Scores = dict[str, float | None]


@dataclass
class SampleResult:
    """A sample as the app answered it (one line of ``samples-<variant>.jsonl``)."""

    id: str
    question: str
    answerable: bool
    answer: str = ""
    abstained: bool = False
    retrieved_ids: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    scores: Scores = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleResult:
        return cls(**data)

    def value(self, metric: str) -> float | None:
        """A score or an operational figure by name (None: not applicable or failed)."""
        if metric in self.scores:
            return self.scores[metric]
        if self.error is None and metric in ("latency_ms", "prompt_tokens", "completion_tokens"):
            return float(getattr(self, metric))
        if metric == "cost_usd":
            return self.cost_usd
        return None


def ranking_ids(document_ids: Sequence[str]) -> list[str]:
    """Chunk document ids, best first, collapsed to documents at their best rank."""
    return list(dict.fromkeys(document_ids))


def score_sample(
    sample: Sample,
    answer: str,
    abstained: bool,
    retrieved: Sequence[str],
    metrics: Sequence[str],
    embed: Embed | None = None,
) -> Scores:
    """The retrieval and answer metrics among ``metrics`` (ragas and judged ones are scored
    elsewhere and are skipped here)."""
    scores: Scores = {}
    judged = {doc: 1 for doc in sample.context_ids}
    references = sample.answers if sample.answerable else ()
    for name in metrics:
        if name == "abstention_accuracy":
            scores[name] = answer_metrics.abstention_correct(abstained, sample.answerable)
        elif name == "semantic_similarity":
            scores[name] = (
                answer_metrics.semantic_similarity(answer, references, embed)
                if embed is not None
                else None
            )
        elif name in ANSWER_METRICS:
            scores[name] = answer_metrics.best_of(name, answer, references)
        elif "@" in name and known_metric(name):
            scores[name] = parse_metric(name)(retrieved, judged) if judged else None
    return scores
